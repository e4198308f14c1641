"""The shipped ConvNeXt-T, EfficientNet-B0 and RoBERTa-base configs against the real models.

torchvision's convnext_tiny and efficientnet_b0 and transformers' RobertaModel are built from
their constructors and config classes on the meta device (shapes only: nothing downloaded,
nothing computed); params are `parameters()`, buffers the persistent buffers of `state_dict()`,
MACs FlopCounterMode / 2, for the whole model and for each top-level module the config names.
Skipped where torchvision or transformers is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from layercalc import analyse

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def load_torchvision() -> Any:
    """torchvision, also where its compiled ops do not load beside this torch (a CUDA build beside
    a CPU torch): its models are plain torch.nn, but its import registers shapes for two of those
    ops (nms, qnms), which then must exist; declaring their schemas lets the import finish."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    try:
        import torchvision
    except RuntimeError:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            try:
                schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
                torch.library.define(f"torchvision::{op}", schema)
            except RuntimeError:
                pass  # declared already (by the extension or an earlier call)
        import torchvision
    return torchvision


def persistent_buffers(model: Any) -> int:
    """Elements of the state dict beyond the parameters: running statistics and the like."""
    return sum(v.numel() for v in model.state_dict().values()) - sum(p.numel() for p in model.parameters())


def measure(model: Any, x: Any, modules: dict[str, str]) -> tuple[dict[str, tuple[int, int]], Any]:
    """(params, MACs) of each named module of the model (config name -> module path), and the output."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(x)
    flops: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        path = name.split(".", 1)[1] if "." in name else ""
        flops[path] = sum(ops.values()) // 2
    found = dict(model.named_modules())
    costs = {ours: (sum(p.numel() for p in found[path].parameters()), flops.get(path, 0))
             for ours, path in modules.items()}
    costs[""] = (sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2)
    return costs, out


def top_rows(report: Any) -> dict[str, tuple[int, int]]:
    """(params, MACs) of each top-level entry by name."""
    return {r["path"]: (r["params"], r["macs"]) for r in report.rows() if r["depth"] == 0}


def compare(config: str, model: Any, x: Any, modules: dict[str, str]) -> Any:
    """The config's totals and each named top-level entry against the model; returns the report."""
    report = analyse(CONFIGS / f"{config}.yaml")
    model.eval()
    theirs, out = measure(model, x, modules)
    ours = top_rows(report)
    assert (report.total["params"], report.total["macs"]) == theirs[""]
    assert report.total["buffers"] == persistent_buffers(model)
    assert report.output_shape == tuple(out.shape)
    for name in modules:
        assert ours[name] == theirs[name], name
    return report


def test_convnext_tiny_is_torchvisions() -> None:
    tv = load_torchvision()
    with torch.device("meta"):
        model = tv.models.convnext_tiny()
        x = torch.zeros(1, 3, 224, 224)
    modules = {"stem": "features.0", "avgpool": "avgpool", "classifier": "classifier"}
    modules |= {f"stage{i}": f"features.{2 * i - 1}" for i in range(1, 5)}
    modules |= {f"downsample{i}": f"features.{2 * i}" for i in range(1, 4)}
    report = compare("convnext_tiny", model, x, modules)
    assert report.total["params"] == 28_589_128  # torchvision's published figure


def test_efficientnet_b0_is_torchvisions() -> None:
    tv = load_torchvision()
    with torch.device("meta"):
        model = tv.models.efficientnet_b0()
        x = torch.zeros(1, 3, 224, 224)
    modules = {"stem": "features.0", "head": "features.8", "avgpool": "avgpool", "classifier": "classifier"}
    modules |= {f"stage{i}": f"features.{i}" for i in range(1, 8)}
    report = compare("efficientnet_b0", model, x, modules)
    assert report.total["params"] == 5_288_548  # torchvision's published figure
    # each squeeze-excitation gate is (N, C, 1, 1), broadcast over the (N, C, H, W) features
    gates = [r for r in report.rows() if r["type"] == "multiply"]
    assert len(gates) == 16 and all(r["output_shape"][2:] != [1, 1] for r in gates)


def test_roberta_base_is_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    # roberta-base's config.json: 514 learned positions (the first two below the padding id), one token type
    hf = transformers.RobertaConfig(max_position_embeddings=514, type_vocab_size=1, attn_implementation="eager")
    with torch.device("meta"):
        model = transformers.RobertaModel(hf)
        ids = torch.zeros(1, 128, dtype=torch.long)

    class Pooled(torch.nn.Module):
        """The model's pooled output, the config's last layer."""

        def __init__(self) -> None:
            super().__init__()
            self.roberta = model

        def forward(self, ids: Any) -> Any:
            return self.roberta(ids).pooler_output

    modules = {"word_embeddings": "roberta.embeddings.word_embeddings",
               "token_type_embeddings": "roberta.embeddings.token_type_embeddings",
               "position_embeddings": "roberta.embeddings.position_embeddings",
               "embeddings_layernorm": "roberta.embeddings.LayerNorm", "pooler": "roberta.pooler.dense"}
    report = compare("roberta_base", Pooled(), ids, modules)
    assert report.total["params"] == 124_645_632  # roberta-base's published count
    rows = {r["path"]: r for r in report.rows()}
    theirs, _ = measure(Pooled(), ids, {f"layer.{i}": f"roberta.encoder.layer.{i}" for i in range(12)})
    for i in range(12):
        assert (rows[f"layer.{i}"]["params"], rows[f"layer.{i}"]["macs"]) == theirs[f"layer.{i}"]
