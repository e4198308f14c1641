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
                                           "ptflops": None, "torchinfo": None, "causal": None})
    with pytest.raises(AssertionError):
        row("bias", thops=1)


def test_unknown_convention_is_refused() -> None:
    with pytest.raises(ValueError, match="nvidia"):
        Costing(analyse({"input": [4], "layers": ["relu"]}), "nvidia")


def test_explicit_input_sizes_and_boundaries() -> None:
    # in_features must equal the last dim (here 4, not the 3 before it)
    assert analyse({"input": [3, 4], "layers": [{"linear": {"out_features": 2, "in_features": 4}}]}).output_shape == (1, 3, 2)
    with pytest.raises(ConfigError, match="in_features 5 does not match the input's 4"):
        analyse({"input": [3, 4], "layers": [{"linear": {"out_features": 2, "in_features": 5}}]})
    # flatten of one dim onto itself is allowed (a no-op), as in PyTorch
    assert analyse({"input": [3, 4], "layers": [{"flatten": {"start_dim": 1, "end_dim": 1}}]}).output_shape == (1, 3, 4)
    # concat of (N, C) outputs: 4 + 3 channels
    report = analyse({"input": [4], "batch": 2, "layers": [{"concat": {"branches": [[], [{"linear": {"out_features": 3}}]]}}]})
    assert report.output_shape == (2, 7)


@pytest.mark.parametrize(
    "layer, fragment",
    [
        ({"conv2d": {"out_channels": 2, "kernel_size": 0}}, "kernel_size: expected an integer >= 1 or a pair [h, w], got 0"),
        ({"conv1d": {"out_channels": 2, "kernel_size": 0}}, "kernel_size: expected an integer >= 1, got 0"),
        ({"conv2d": {"out_channels": 2, "kernel_size": 1, "padding": -1}}, "padding: expected an integer >= 0"),
        ({"conv2d": {"out_channels": 2, "kernel_size": {"a": 1}}}, "got a mapping"),
        ({"linear": {"out_features": 2, "tied_to": 3}}, "tied_to: expected a layer name"),
        # a float that is a whole number is still not an integer: the message says the float it got
        ({"linear": {"out_features": 3.0}}, "out_features: expected an integer >= 1, got 3.0"),
        ({"conv1d": {"out_channels": 2, "kernel_size": 2.0}}, "kernel_size: expected an integer >= 1, got 2.0"),
    ],
)
def test_argument_error_wording(layer: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        analyse({"input": [2, 4, 4] if "conv2d" in layer else [2, 4], "layers": [layer]})
    assert fragment in str(info.value)


def test_inclusive_bounds_and_padding_words_are_accepted() -> None:
    # dropout's p lies in [0, 1], both ends allowed as in PyTorch; padding also takes the word "same"
    assert analyse({"input": [4], "layers": [{"dropout": {"p": 1.0}}]}).total["params"] == 0
    assert analyse({"input": [2, 4, 4], "layers": [{"conv2d": {"out_channels": 2, "kernel_size": 3, "padding": "same"}}]}).output_shape == (1, 2, 4, 4)


def test_grouped_conv_weight_gradient_counts_once_except_under_torch() -> None:
    # conv2d 4 -> 8, k3, groups 4, padding 1 on 1x4x5x5: forward (4/4)·3·3·8·5·5 = 1,800 MACs.
    # The weight gradient costs one forward (1,800); FlopCounterMode charges it `groups` times (7,200);
    # the input gradient one more forward (1,800) when a layer below needs it
    from layercalc.layers import REGISTRY

    conv = REGISTRY["conv2d"](out_channels=8, kernel_size=3, padding=1, groups=4)
    x, y = (1, 4, 5, 5), (1, 8, 5, 5)
    assert conv.macs(x, y) == 1800
    assert conv.backward_macs(x, y, True, "layercalc") == 3600
    assert conv.backward_macs(x, y, False, "layercalc") == 1800
    assert conv.backward_macs(x, y, True, "torch") == 9000
    assert conv.backward_macs(x, y, False, "torch") == 7200


@pytest.mark.parametrize(
    "x, layer, fragment",
    [
        # dilation 2 stretches a 3-wide kernel to 2·(3 - 1) + 1 = 5 cells; padding 1 makes 2 + 2·1 = 4
        ([1, 2, 2], {"maxpool2d": {"kernel_size": 3, "padding": 1, "dilation": 2}}, "kernel_size 5x5 exceeds padded input 4x4"),
        ([3, 4], {"lstm": {"input_size": 5, "hidden_size": 2}}, "input_size"),
    ],
)
def test_more_shape_error_wording(x: list, layer: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        analyse({"input": x, "layers": [layer]})
    assert fragment in str(info.value)


def test_resampling_accepts_one_scale_per_dim_and_a_one_cell_output() -> None:
    # a list of one scale for a 1-D input; scale 0.5 on 2 cells leaves floor(2·0.5) = 1 cell, still an output
    assert analyse({"input": [3, 4], "layers": [{"upsample": {"scale_factor": [2]}}]}).output_shape == (1, 3, 8)
    assert analyse({"input": [3, 2], "layers": [{"upsample": {"scale_factor": 0.5}}]}).output_shape == (1, 3, 1)


def test_state_names_are_pytorchs() -> None:
    # the names nn.BatchNorm2d(3).state_dict() and nn.LSTM(4, 2, bidirectional=True) use
    from layercalc.layers import REGISTRY

    assert list(REGISTRY["batchnorm2d"]().buffer_shapes((1, 3, 4, 4))) == ["running_mean", "running_var", "num_batches_tracked"]
    lstm = REGISTRY["lstm"](input_size=4, hidden_size=2, bidirectional=True)
    assert sorted(lstm.param_shapes((1, 5, 4))) == sorted(
        f"{w}_{k}_l0{s}" for w in ("weight", "bias") for k in ("ih", "hh") for s in ("", "_reverse"))


def test_norm_without_affine_has_no_parameter_gradients() -> None:
    import numpy as np

    from layercalc.layers import REGISTRY

    bn = REGISTRY["batchnorm2d"](affine=False)
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    y, cache = bn.forward(x, {})
    dx, grads = bn.backward(np.ones_like(y), {}, cache)
    assert grads == {} and dx.shape == x.shape
    np.testing.assert_allclose(dx, 0, atol=1e-12)  # a constant upstream gradient vanishes through the mean


def test_a_stack_of_a_trillion_recurrent_layers_is_refused() -> None:
    # each stacked layer has its own named weights (weight_ih_l{k}, ...): a fuzzer's 10^12 filled the memory
    with pytest.raises(ConfigError) as info:
        analyse({"input": [3, 4], "layers": [{"lstm": {"hidden_size": 2, "num_layers": 10**12}}]})
    assert "num_layers: at most 10,000 stacked layers, got 1,000,000,000,000" in str(info.value)
