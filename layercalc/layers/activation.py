"""Elementwise activations and softmax: shape-preserving, no parameters, no MACs.

Each elementwise type gives f(x) and f'(x) (from x and y = f(x)); forward and backward follow.
Derivatives at the kinks follow PyTorch (relu'(0) = 0, leakyrelu'(0) = slope, hardswish'(-3) = 0 and
hardswish'(3) = 1: the outer pieces own both ends, ...).
"""

from __future__ import annotations

import math
from typing import Any

from ..lazy import np
from .base import Arg, Bool, Choice, Float, Int, Layer, Saved, Shape, numel, register
from .peers import ACT, row, rules

_INPLACE = Arg("inplace", Bool(), False, "accepted for PyTorch compatibility; no effect")


class _Elementwise(Layer):
    """y = f(x) elementwise; dx = dy · f'(x)."""

    args: tuple[Arg, ...] = (_INPLACE,)
    # ptflops counts some activations in its module hook (output elements) and again in its
    # patch of the F.* function the module calls (input elements); no other tool counts them
    ptflops_hook: bool = False
    ptflops_patch: bool = False
    # PyTorch's autograd keeps the output where the derivative is written from it (relu, sigmoid,
    # tanh), else the input
    keeps_result: bool = False

    shape_rule = "unchanged"
    params_rule = "none"
    macs_rule = "0 (elementwise)"
    peer_rules = rules()
    example = ([2, 3], {})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the words follow the two flags peer_counts reads, so they cannot drift apart
        parts = [what for on, what in ((cls.ptflops_hook, "numel(y) in its module hook"),
                                       (cls.ptflops_patch, f"numel(x) in its F.{cls.type_name} patch")) if on]
        cls.peer_rules = rules(ptflops=" + ".join(parts)) if parts else rules()
        # every argument of an activation changes its values only
        cls.inert_args = tuple(a.name for a in cls.args)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        counted = self.ptflops_hook or self.ptflops_patch
        pair = (numel(y) if self.ptflops_hook else 0, numel(x) if self.ptflops_patch else 0)
        return [row(ACT, ptflops=pair if counted else None)]

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        if self.keeps_result:
            return [Saved(numel(y), y[-1] if y else 1, tensor="y")]
        return super().saved_for_backward(x, y, flash)

    def f(self, x: Any) -> Any:
        """The activation, elementwise."""
        return x

    def df(self, x: Any, y: Any) -> Any:
        """Its derivative at x (y = f(x) given, often cheaper)."""
        return np.ones_like(x)

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        y = self.f(x)
        return y, (x, y)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        return dy * self.df(*cache), {}


@register
class ReLU(_Elementwise):
    type_name = "relu"
    keeps_result = True
    summary = "max(x, 0)"
    ptflops_hook = ptflops_patch = True
    kinks = (0.0,)

    def f(self, x: Any) -> Any:
        return np.maximum(x, 0)

    def df(self, x: Any, y: Any) -> Any:
        return (x > 0).astype(x.dtype)


@register
class ReLU6(_Elementwise):
    type_name = "relu6"
    summary = "min(max(x, 0), 6)"
    ptflops_hook = True
    kinks = (0.0, 6.0)

    def f(self, x: Any) -> Any:
        return np.clip(x, 0, 6)

    def df(self, x: Any, y: Any) -> Any:
        return ((x > 0) & (x < 6)).astype(x.dtype)


@register
class LeakyReLU(_Elementwise):
    type_name = "leakyrelu"
    summary = "x if x > 0 else negative_slope * x"
    ptflops_hook = True
    kinks = (0.0,)
    args = (Arg("negative_slope", Float(), 0.01), _INPLACE)

    negative_slope: float

    def f(self, x: Any) -> Any:
        return np.where(x > 0, x, self.negative_slope * x)

    def df(self, x: Any, y: Any) -> Any:
        return np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)


@register
class ELU(_Elementwise):
    type_name = "elu"
    summary = "x if x > 0 else alpha * (exp(x) - 1)"
    ptflops_hook = ptflops_patch = True
    kinks = (0.0,)
    args = (Arg("alpha", Float(), 1.0), _INPLACE)

    alpha: float

    def f(self, x: Any) -> Any:
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def df(self, x: Any, y: Any) -> Any:
        return np.where(x > 0, 1.0, y + self.alpha).astype(x.dtype)  # alpha·e^x = y + alpha


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


@register
class GELU(_Elementwise):
    type_name = "gelu"
    summary = "x * Phi(x) (exact erf, or the tanh approximation)"
    ptflops_hook = ptflops_patch = True
    args = (Arg("approximate", Choice("none", "tanh"), "none"),)

    approximate: str

    def _phi_cdf(self, x: Any) -> Any:
        # NumPy has no erf; math.erf per element is exact, and verify's tensors are small enough
        erf = np.frompyfunc(math.erf, 1, 1)
        return 0.5 * (1.0 + erf(x / math.sqrt(2)).astype(x.dtype))

    def f(self, x: Any) -> Any:
        if self.approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
        return x * self._phi_cdf(x)

    def df(self, x: Any, y: Any) -> Any:
        if self.approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x**2)
        return self._phi_cdf(x) + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _sigmoid(x: Any) -> Any:
    return 0.5 * (1 + np.tanh(0.5 * x))  # overflow-free form of 1 / (1 + e^-x)


@register
class SiLU(_Elementwise):
    type_name = "silu"
    summary = "x * sigmoid(x)"
    ptflops_patch = True

    def f(self, x: Any) -> Any:
        return x * _sigmoid(x)

    def df(self, x: Any, y: Any) -> Any:
        s = _sigmoid(x)
        return s * (1 + x * (1 - s))


@register
class Sigmoid(_Elementwise):
    type_name = "sigmoid"
    keeps_result = True
    summary = "1 / (1 + exp(-x))"
    args = ()

    def f(self, x: Any) -> Any:
        return _sigmoid(x)

    def df(self, x: Any, y: Any) -> Any:
        return y * (1 - y)


@register
class Tanh(_Elementwise):
    type_name = "tanh"
    keeps_result = True
    summary = "tanh(x)"
    args = ()

    def f(self, x: Any) -> Any:
        return np.tanh(x)

    def df(self, x: Any, y: Any) -> Any:
        return 1 - y * y


@register
class Hardswish(_Elementwise):
    type_name = "hardswish"
    summary = "x * relu6(x + 3) / 6"
    kinks = (-3.0, 3.0)

    def f(self, x: Any) -> Any:
        return x * np.clip(x + 3, 0, 6) / 6

    def df(self, x: Any, y: Any) -> Any:
        return np.where(x <= -3, 0.0, np.where(x < 3, x / 3 + 0.5, 1.0)).astype(x.dtype)


@register
class Hardsigmoid(_Elementwise):
    type_name = "hardsigmoid"
    summary = "relu6(x + 3) / 6"
    kinks = (-3.0, 3.0)

    def f(self, x: Any) -> Any:
        return np.clip(x + 3, 0, 6) / 6

    def df(self, x: Any, y: Any) -> Any:
        return ((x > -3) & (x < 3)).astype(x.dtype) / 6


@register
class Identity(_Elementwise):
    type_name = "identity"
    summary = "y = x"
    args = ()

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return []  # nothing to count, for anyone

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        return []  # the gradient passes through unchanged

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        return x, None

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        return dy, {}


@register
class Softmax(Layer):
    type_name = "softmax"
    summary = "exp(x) / sum(exp(x)) along dim"
    args = (Arg("dim", Int(low=-64), -1, "counts the batch, as in PyTorch"),)
    shape_rule = "unchanged; dim (counting the batch) must exist"
    params_rule = "none"
    macs_rule = "0 (exponentials and a division, not multiply-accumulates)"
    peer_rules = rules(thop="numel(x) / F · (3·F − 1), F = the size of dim", ptflops="numel(x) in its F.softmax patch")
    example = ([2, 5], {})

    dim: int

    def output_shape(self, x: Shape) -> Shape:
        self.expect_dim(x, self.dim, "dim")
        return x

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        f = x[self.dim]  # thop: 3F - 1 ops per softmax over F values; ptflops: its F.softmax patch
        return [row(ACT, thop=numel(x) // f * (3 * f - 1), ptflops=(0, numel(x)))]

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        return [Saved(numel(y), y[-1] if y else 1, tensor="y")]  # Jᵀ dy is written from y, as PyTorch's

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        e = np.exp(x - x.max(axis=self.dim, keepdims=True))
        y = e / e.sum(axis=self.dim, keepdims=True)
        return y, y

    def backward(self, dy: Any, params: dict[str, Any], y: Any) -> tuple[Any, dict[str, Any]]:
        # J = diag(y) - y yᵀ along dim, so Jᵀ dy = y (dy - <dy, y>)
        return y * (dy - (dy * y).sum(axis=self.dim, keepdims=True)), {}


@register
class Softplus(_Elementwise):
    type_name = "softplus"
    summary = "log(1 + exp(beta·x)) / beta; x itself where beta·x > threshold"
    args = (Arg("beta", Float(), 1.0), Arg("threshold", Float(), 20.0))

    beta: float
    threshold: float

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # where it switches to the identity the value jumps (by < e^-threshold at the default): verify steps clear of it
        self.kinks = (self.threshold / self.beta,) if self.beta else ()  # type: ignore[misc]

    def f(self, x: Any) -> Any:
        # PyTorch reverts to the identity above the threshold (where the two differ by < e^-threshold)
        bx = self.beta * x
        return np.where(bx > self.threshold, x, np.logaddexp(0.0, bx) / self.beta)

    def df(self, x: Any, y: Any) -> Any:
        bx = self.beta * x
        return np.where(bx > self.threshold, 1.0, _sigmoid(bx)).astype(x.dtype)
