"""--convention: each peer's total equals what the real tool prints for the equivalent torch
model (eval mode), to the integer, at any batch; --training against FlopCounterMode's count of
a forward and backward pass. The tools are test-only dependencies (see the README)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from layercalc import analyse
from layercalc.conventions import Costing, training

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("torch_models")
from test_torch_crosscheck import random_config  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
logging.getLogger("fvcore").setLevel(logging.CRITICAL)


def tool_total(tool: str, config: dict[str, Any]) -> int:
    """What the tool itself reports for a fresh torch model of the config (MACs; torch: FLOPs / 2)."""
    model, shape = torch_models.build(config)
    x = torch_models.example(model, shape)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with torch.no_grad(), warnings.catch_warnings(), quiet:
        warnings.simplefilter("ignore")
        if tool == "torchinfo":
            torchinfo = pytest.importorskip("torchinfo")
            return int(torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds)
        if tool == "fvcore":
            fvcore_nn = pytest.importorskip("fvcore.nn")
            analysis = fvcore_nn.FlopCountAnalysis(model, (x,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
        if tool == "thop":
            thop = pytest.importorskip("thop")
            return int(thop.profile(model, inputs=(x,), verbose=False)[0])
        if tool == "ptflops":
            ptflops = pytest.importorskip("ptflops")
            macs, _ = ptflops.get_model_complexity_info(
                model, tuple(shape[1:]), input_constructor=lambda _: x, as_strings=False,
                backend="pytorch", print_per_layer_stat=False, verbose=False,
            )
            return int(macs)
        return torch_models.counts(model, shape)["macs"]


TOOLS = ["torch", "fvcore", "thop", "ptflops", "torchinfo"]


def ours(config: dict[str, Any], convention: str) -> int:
    return Costing(analyse(config), convention).total() or 0  # None: the tool counts nothing here


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
@pytest.mark.parametrize("tool", TOOLS)
def test_shipped_configs_match_each_tool(path: Path, tool: str) -> None:
    config = yaml.safe_load(path.read_text())
    config["batch"] = 2 if config["input"][-1] <= 64 else 1
    assert ours(config, tool) == tool_total(tool, config)


def test_resnet50_reconciliation() -> None:
    """The issue's published figures: each tool's ResNet-50 total at 224x224, batch 1."""
    config = yaml.safe_load((CONFIGS[0].parent / "resnet50.yaml").read_text())
    expected = {"torchinfo": 4_089_238_376, "fvcore": 4_111_512_576, "thop": 4_133_742_592,
                "ptflops": 4_132_436_968, "torch": 8_178_368_512 // 2, "layercalc": 4_089_184_256}
    assert {c: ours(config, c) for c in expected} == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(random_config())
def test_random_configs_match_each_tool(config: dict[str, Any]) -> None:
    try:
        analyse(config)
        torch_models.build(config)
    except Exception:
        assume(False)
    for tool in TOOLS:
        assert ours(config, tool) == tool_total(tool, config), tool


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "unet_small", "conv1d_net", "mnist_mlp"])
def test_training_matches_flopcountermode_forward_and_backward(name: str) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    config = yaml.safe_load((CONFIGS[0].parent / f"{name}.yaml").read_text())
    config["batch"] = 2
    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(shape)).sum().backward()
    assert training(analyse(config), "torch")["training_flops"] == counter.get_total_flops()
