"""Activations where random inputs never land: the derivative at each kink (PyTorch's choice of
subgradient, read off torch 2.13's backward kernels and re-checked live when torch is installed),
closed-form values, and softmax on inputs that overflow a naive exp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from layercalc.errors import ShapeError
from layercalc.layers import REGISTRY

# (entry, x at a kink, PyTorch's derivative there): relu and relu6 pass the gradient only strictly
# inside (0, 6); leaky_relu and elu take the negative piece at 0 (slope, alpha·e^0); hardsigmoid
# only strictly inside (-3, 3); hardswish gives its outer pieces both ends: 0 at -3, 1 at 3
KINKS = [
    ("relu", {}, 0.0, 0.0),
    ("relu6", {}, 0.0, 0.0),
    ("relu6", {}, 6.0, 0.0),
    ("leakyrelu", {"negative_slope": 0.2}, 0.0, 0.2),
    ("elu", {"alpha": 0.5}, 0.0, 0.5),
    ("hardsigmoid", {}, -3.0, 0.0),
    ("hardsigmoid", {}, 3.0, 0.0),
    ("hardswish", {}, -3.0, 0.0),
    ("hardswish", {}, 3.0, 1.0),
]


def grad_at(kind: str, args: dict, x: float) -> float:
    layer = REGISTRY[kind](**args)
    y, cache = layer.forward(np.array([x]), {})
    dx, _ = layer.backward(np.ones(1), {}, cache)
    return float(dx[0])


@pytest.mark.parametrize("kind, args, x, expected", KINKS, ids=[f"{k[0]}@{k[2]:g}" for k in KINKS])
def test_derivative_at_each_kink_is_pytorchs(kind: str, args: dict, x: float, expected: float) -> None:
    assert grad_at(kind, args, x) == expected


@pytest.mark.parametrize("kind, args, x, expected", KINKS, ids=[f"{k[0]}@{k[2]:g}" for k in KINKS])
def test_kink_table_is_what_torch_does(kind: str, args: dict, x: float, expected: float) -> None:
    torch = pytest.importorskip("torch")
    modules = {"relu": torch.nn.ReLU, "relu6": torch.nn.ReLU6, "leakyrelu": torch.nn.LeakyReLU, "elu": torch.nn.ELU,
               "hardsigmoid": torch.nn.Hardsigmoid, "hardswish": torch.nn.Hardswish}
    fn = modules[kind](**args)
    t = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    fn(t).sum().backward()
    assert t.grad.item() == expected


def test_leaky_relu_and_elu_values_at_zero_and_below() -> None:
    # f(0) = 0 for both; f(-1) = slope·(-1) and alpha·(e^-1 - 1)
    for kind, args, at_minus_one in (("leakyrelu", {"negative_slope": 0.2}, -0.2), ("elu", {"alpha": 0.5}, 0.5 * (math.exp(-1) - 1))):
        layer = REGISTRY[kind](**args)
        y, _ = layer.forward(np.array([0.0, -1.0, 2.0]), {})
        np.testing.assert_allclose(y, [0.0, at_minus_one, 2.0], rtol=1e-15)


def test_gelu_exact_from_the_normal_cdf() -> None:
    # gelu(1) = Φ(1) = 0.8413447460685429; gelu'(1) = Φ(1) + 1·φ(1), φ(1) = e^(-1/2)/√(2π) = 0.24197072451914337
    layer = REGISTRY["gelu"]()
    y, cache = layer.forward(np.array([1.0, -1.0]), {})
    np.testing.assert_allclose(y, [0.8413447460685429, -1 + 0.8413447460685429], rtol=1e-14)
    dx, _ = layer.backward(np.ones(2), {}, cache)
    np.testing.assert_allclose(dx, [0.8413447460685429 + 0.24197072451914337, (1 - 0.8413447460685429) - 0.24197072451914337], rtol=1e-14)


def test_softmax_is_exact_on_rows_far_apart() -> None:
    # each row is shifted by its own max: rows around +1000 and -1000 both give (1, e) / (1 + e), and
    # a row of huge positive values does not overflow
    layer = REGISTRY["softmax"](dim=1)
    x = np.array([[1000.0, 1001.0], [-1000.0, -999.0], [0.0, 1.0]])
    y, cache = layer.forward(x, {})
    e = math.e
    np.testing.assert_allclose(y, [[1 / (1 + e), e / (1 + e)]] * 3, rtol=1e-15)
    # along dim 0 instead: the columns are normalised, not the rows
    y0, _ = REGISTRY["softmax"](dim=0).forward(np.array([[0.0, 5.0], [0.0, 5.0]]), {})
    np.testing.assert_allclose(y0, [[0.5, 0.5], [0.5, 0.5]])


def test_softmax_dim_out_of_range_names_the_argument() -> None:
    with pytest.raises(ShapeError, match="dim"):
        REGISTRY["softmax"](dim=3).output_shape((2, 5))


def test_relu6_clips_at_six() -> None:
    y, _ = REGISTRY["relu6"]().forward(np.array([-1.0, 3.0, 6.0, 7.5]), {})
    np.testing.assert_array_equal(y, [0.0, 3.0, 6.0, 6.0])
