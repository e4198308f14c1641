"""The shipped Mixtral 8x7B config against transformers' MixtralForCausalLM built from MixtralConfig's
defaults (its published sizes) on the meta device: no weights are allocated, 46.7 B params.

MACs are FlopCounterMode / 2 with eager attention. The experts run as transformers' "batched_mm"
path: every (token, chosen expert) pair as one batched matrix product, 2·2048 pairs a layer, so
FlopCounterMode counts top_k experts per token, what layercalc counts. The default eager path loops
over the experts and gathers each one's tokens: the same products (each pair once), but the
gathering needs the routing's values (`nonzero`), which the meta device does not have; a toy model
with real weights checks that path below. Skipped when `transformers` is not installed."""

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

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mixtral_8x7b.yaml"


def flops_of(model: Any, ids: Any) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(ids)
    return counter.get_total_flops()


def test_mixtral_8x7b_is_transformers_model() -> None:
    hf = transformers.MixtralConfig(attn_implementation="eager")
    hf._experts_implementation = "batched_mm"
    with torch.device("meta"):
        model = transformers.MixtralForCausalLM(hf)
    report = analyse(str(CONFIG))
    params = sum(p.numel() for p in model.parameters())
    names = {n for n, _ in model.named_parameters()}
    persistent = sum(t.numel() for n, t in model.state_dict().items() if n not in names)  # inv_freq is not
    assert report.total["params"] == params == 46_702_792_704
    assert report.total["buffers"] == persistent == 0
    # active: 46,702,792,704 − 32 layers · (8 − 2) experts · 3 · 4096 · 14336 = 12,879,925,248
    assert report.total["active_params"] == 12_879_925_248
    ids = torch.zeros(report.network.input_shape, dtype=torch.long, device="meta")
    assert 2 * report.total["macs"] == flops_of(model, ids)


def test_a_toy_mixtral_on_the_eager_expert_loop() -> None:
    """The shipped structure at toy sizes (hidden 64, 4 heads of 16, 2 kv heads, experts of 96, 4
    experts, top 2, vocabulary 128, 2 layers, 16 tokens), real random weights: params, and
    FlopCounterMode's count on the eager expert loop and on batched_mm, equal ours."""
    config = yaml.safe_load(CONFIG.read_text())
    sizes = {"num_embeddings": {32000: 128}, "embedding_dim": {4096: 64},
             "out_features": {32000: 128, 4096: 64, 14336: 96}, "num_heads": {32: 4}, "num_kv_heads": {8: 2},
             "num_experts": {8: 4}, "repeat": {32: 2}}
    small = shrunk(config, sizes)
    small["input"] = [16]
    hf = transformers.MixtralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(hf).eval()
    report = analyse(small)
    assert report.total["params"] == sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, 128, (1, 16))
    for path in ("eager", "batched_mm"):
        model.config._experts_implementation = path
        assert 2 * report.total["macs"] == flops_of(model, ids), path
    # transformers' default, "grouped_mm", runs the experts as one grouped product for which
    # FlopCounterMode has no formula: it counts none of the experts' 2 layers · 16 tokens · top 2 ·
    # 3 · 64 · 96 = 1,179,648 MACs
    model.config._experts_implementation = "grouped_mm"
    assert 2 * (report.total["macs"] - 1_179_648) == flops_of(model, ids)
