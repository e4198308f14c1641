"""The shipped GPT-2 and Llama configs against Hugging Face's own model classes, module by module.

The models are built from their config objects (random weights, nothing downloaded) with the eager
attention implementation, whose q·kᵀ and A·v are plain matmuls FlopCounterMode sees. Every module
the config names (wte, h.3.attn, layers.1.mlp.gate_proj, ...) must have Hugging Face's parameter
count and MACs (FlopCounterMode / 2), and the whole model its parameter count and output shape.
GPT-2 is the full-size model at a shorter sequence; Llama is the shipped Llama 3 structure scaled
down (Llama 2 and 3 share it; the full sizes do not fit this machine's memory in float32).
Skipped when `transformers` is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from layercalc import analyse
from toy_sizes import shrunk

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _key(path: str) -> str:
    """A row's path as Hugging Face names the module: h.0.0.body.attn -> h.0.attn."""
    head, rest = path.split(".")[:2], path.split(".")[2:]
    return ".".join(head + [s for s in rest if not s.isdigit() and s not in ("body", "branches")])


def ours(config: dict[str, Any]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The report, and its user-named rows by Hugging Face module name."""
    report = analyse(config)
    rows = {}
    for row in report.rows():
        if row["path"].split(".")[-1] == row["name"] or row["depth"] <= 1:  # named, or a layer copy
            rows[_key(row["path"])] = row
    return report, rows


def theirs(model: Any, ids: Any, prefix: str) -> tuple[dict[str, int], dict[str, int], Any]:
    """Hugging Face's params and MACs by module name (without the base-model prefix), and the output."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(ids).logits
    flops = {}
    for name, ops in counter.get_flop_counts().items():
        name = name.split(".", 1)[1] if "." in name else ""
        flops[name.removeprefix(prefix)] = sum(ops.values()) // 2
    params = {name.removeprefix(prefix): sum(p.numel() for p in m.parameters()) for name, m in model.named_modules()
              if not isinstance(m, torch.nn.ModuleList)}  # a list of layers is never called: no count of its own
    return params, flops, out


def check(config: dict[str, Any], model: Any, prefix: str, tied: set[str]) -> list[str]:
    """Compare every named module; returns the names compared."""
    report, rows = ours(config)
    model.eval()
    ids = torch.zeros(report.network.input_shape, dtype=torch.long)
    params, flops, out = theirs(model, ids, prefix)
    assert report.total["params"] == sum(p.numel() for p in model.parameters())
    assert report.output_shape == tuple(out.shape)
    compared = []
    for name, row in rows.items():
        if name not in params:
            continue
        if name not in tied:  # a tied head's weight belongs to the embedding
            assert row["params"] == params[name], name
        assert row["macs"] == flops.get(name, 0), name
        compared.append(name)
    return compared


def test_gpt2_module_by_module() -> None:
    config = yaml.safe_load((CONFIGS / "gpt2.yaml").read_text())
    config["input"] = [64]  # the full model at a shorter sequence (positions still 1,024)
    hf = transformers.GPT2Config(attn_implementation="eager")  # GPT-2 small's defaults
    model = transformers.GPT2LMHeadModel(hf)
    compared = check(config, model, "transformer.", tied={"lm_head"})
    expected = {"wte", "wpe", "ln_f", "lm_head"} | {f"h.{i}.{m}" for i in range(12)
                                                    for m in ("ln_1", "attn", "ln_2", "mlp", "mlp.c_fc", "mlp.c_proj")}
    assert expected <= set(compared)


def small_llama(config: dict[str, Any]) -> dict[str, Any]:
    """The shipped Llama structure at toy sizes: hidden 64, 4 heads of 16 (2 kv heads), MLP 172,
    vocabulary 128, 2 layers, 16 tokens."""
    sizes = {"num_embeddings": {128256: 128, 32000: 128}, "embedding_dim": {4096: 64},
             "out_features": {128256: 128, 32000: 128, 4096: 64, 14336: 172, 11008: 172},
             "num_heads": {32: 4}, "num_kv_heads": {8: 2}, "repeat": {32: 2}}
    small = shrunk(config, sizes)
    small["input"] = [16]
    return small


@pytest.mark.parametrize("name, kv, theta", [("llama2_7b", 4, 10000.0), ("llama3_8b", 2, 500000.0)])
def test_llama_module_by_module(name: str, kv: int, theta: float) -> None:
    config = small_llama(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    hf = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=kv, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=theta,
        tie_word_embeddings=False, attn_implementation="eager",
    )
    model = transformers.LlamaForCausalLM(hf)
    compared = check(config, model, "model.", tied=set())
    expected = {"embed_tokens", "norm", "lm_head"} | {
        f"layers.{i}.{m}" for i in range(2) for m in (
            "input_layernorm", "self_attn", "post_attention_layernorm", "mlp", "mlp.gate_proj", "mlp.up_proj",
            "mlp.down_proj")}
    assert expected <= set(compared)


def test_qwen2_0_5b_against_transformers_on_the_meta_device() -> None:
    """The shipped Qwen2-0.5B at its own 2048 tokens against Qwen2ForCausalLM built from Qwen2-0.5B's
    config on the meta device (no memory, no weights): params, persistent buffers (none: inv_freq is
    not persistent) and MACs = FlopCounterMode / 2 with eager attention."""
    hf = transformers.Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, use_sliding_window=False, sliding_window=131072, max_window_layers=24,
        attn_implementation="eager",
    )
    with torch.device("meta"):
        model = transformers.Qwen2ForCausalLM(hf).eval()
    report = analyse(CONFIGS / "qwen2_0_5b.yaml")
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    buffers = sum(t.numel() for n, t in model.state_dict().items() if n not in names)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(torch.zeros(report.network.input_shape, dtype=torch.long, device="meta")).logits
    assert report.total["params"] == sum(p.numel() for p in model.parameters()) == 494_032_768
    assert report.total["buffers"] == buffers == 0
    assert report.total["macs"] == counter.get_total_flops() // 2
    assert report.output_shape == tuple(out.shape)
