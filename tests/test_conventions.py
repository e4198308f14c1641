"""--convention: each peer's total equals what the real tool prints for the equivalent torch
model (eval mode), to the integer, at any batch; --training against FlopCounterMode's count of
a forward and backward pass. The tools are test-only dependencies (see the README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from layercalc import analyse
from layercalc.conventions import Costing, training

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("torch_models")
from peer_tools import tool_total, training_flops  # noqa: E402
from reference.record import fits, shipped  # noqa: E402
from test_torch_crosscheck import random_config  # noqa: E402

STORED = json.loads((Path(__file__).resolve().parent / "reference" / "figures.json").read_text())

# one input each: the encoder-decoders (named inputs) have no torch_models equivalent; tests/test_streams.py
# checks them against transformers' own models
CONFIGS = [p for p in sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
           if "\ninput: {" not in p.read_text()]


TOOLS = ["torch", "fvcore", "thop", "ptflops", "torchinfo"]


def ours(config: dict[str, Any], convention: str) -> int:
    return Costing(analyse(config), convention).total()  # 0 when the tool counts nothing here


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
@pytest.mark.parametrize("tool", TOOLS)
def test_shipped_configs_match_each_tool(path: Path, tool: str) -> None:
    config = shipped(path.stem)  # as recorded: the tools' batch, a language model on fewer tokens, a smaller clip
    if not fits(config):
        pytest.skip("too big for a float32 torch model here; test_transformer_configs checks a small Llama")
    live = tool_total(tool, config)
    assert ours(config, tool) == live
    # the figure the torch-free tests read is what the tool says today
    assert STORED["conventions"][f"config:{path.stem}"]["totals"][tool] == live


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(random_config())
def test_random_configs_match_each_tool(config: dict[str, Any]) -> None:
    matches_each_tool(config)


def matches_each_tool(config: dict[str, Any]) -> None:
    """Every convention's total equals the real tool's on the equivalent torch model (a config
    that layercalc or torch refuses is not an example)."""
    try:
        analyse(config)
        torch_models.build(config)
    except Exception:
        assume(False)
    for tool in TOOLS:
        assert ours(config, tool) == tool_total(tool, config), tool


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "unet_small", "conv1d_net", "mnist_mlp"])
def test_training_matches_flopcountermode_forward_and_backward(name: str) -> None:
    config = yaml.safe_load((CONFIGS[0].parent / f"{name}.yaml").read_text())
    config["batch"] = 2
    live = training_flops(config)
    assert training(analyse(config), "torch")["training_flops"] == live
    assert STORED["training"][f"config:{name}"]["training_flops"] == live
