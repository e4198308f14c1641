"""Exact wording of shape errors and of rules no other test reaches (each expected value by hand)."""

from __future__ import annotations

import pytest

from layercalc import analyse
from layercalc.conventions import Costing
from layercalc.errors import ConfigError
from layercalc.layers.peers import row


@pytest.mark.parametrize(
    "layers, fragment",
    [
        ([{"flatten": {"end_dim": 5}}], "end_dim 5 is out of range for 4-D input 1x2x3x4"),
        ([{"flatten": {"start_dim": 3, "end_dim": 1}}], "start_dim 3 comes after end_dim 1"),
        ([{"flatten": {"start_dim": 0}}, {"linear": {"out_features": 2}}], "expects input (N, ..., features), got 24"),
        ([{"residual": {"body": [{"conv2d": {"out_channels": 3, "kernel_size": 1}}]}}],
         "body gives 1x3x3x4 but shortcut gives 1x2x3x4; a residual adds equal shapes"),
        ([{"concat": {"branches": [[], [{"maxpool2d": {"kernel_size": 2}}]]}}],
         "; concat needs equal shapes except the channel dim"),
    ],
)
def test_shape_error_wording(layers: list, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        analyse({"input": [2, 3, 4], "layers": layers})
    assert fragment in str(info.value)


def test_ptflops_linear_without_bias_adds_nothing() -> None:
    # ptflops' linear hook: input elements x out_features, plus out_features only with a bias: 4·3 = 12
    assert Costing(analyse({"input": [4], "layers": [{"linear": {"out_features": 3, "bias": False}}]}), "ptflops").total() == 12


def test_peer_rows_refuse_unknown_conventions() -> None:
    assert row("bias", thop=1) == ("bias", {"layercalc": None, "torch": None, "fvcore": None, "thop": 1,
                                           "ptflops": None, "torchinfo": None})
    with pytest.raises(AssertionError):
        row("bias", thops=1)


def test_unknown_convention_is_refused() -> None:
    with pytest.raises(ValueError, match="nvidia"):
        Costing(analyse({"input": [4], "layers": ["relu"]}), "nvidia")
