"""Elementwise activations and softmax: shape-preserving, no parameters, no MACs."""

from __future__ import annotations

from .base import Arg, Bool, Choice, Float, Int, Layer, Shape, register

_INPLACE = Arg("inplace", Bool(), False, "accepted for PyTorch compatibility; no effect")


class _Elementwise(Layer):
    """y = f(x) elementwise."""

    args: tuple[Arg, ...] = (_INPLACE,)


@register
class ReLU(_Elementwise):
    type_name = "relu"
    summary = "max(x, 0)"


@register
class ReLU6(_Elementwise):
    type_name = "relu6"
    summary = "min(max(x, 0), 6)"


@register
class LeakyReLU(_Elementwise):
    type_name = "leakyrelu"
    summary = "x if x > 0 else negative_slope * x"
    args = (Arg("negative_slope", Float(), 0.01), _INPLACE)


@register
class ELU(_Elementwise):
    type_name = "elu"
    summary = "x if x > 0 else alpha * (exp(x) - 1)"
    args = (Arg("alpha", Float(), 1.0), _INPLACE)


@register
class GELU(_Elementwise):
    type_name = "gelu"
    summary = "x * Phi(x) (exact erf, or the tanh approximation)"
    args = (Arg("approximate", Choice("none", "tanh"), "none"),)


@register
class SiLU(_Elementwise):
    type_name = "silu"
    summary = "x * sigmoid(x)"


@register
class Sigmoid(_Elementwise):
    type_name = "sigmoid"
    summary = "1 / (1 + exp(-x))"
    args = ()


@register
class Tanh(_Elementwise):
    type_name = "tanh"
    summary = "tanh(x)"
    args = ()


@register
class Hardswish(_Elementwise):
    type_name = "hardswish"
    summary = "x * relu6(x + 3) / 6"


@register
class Hardsigmoid(_Elementwise):
    type_name = "hardsigmoid"
    summary = "relu6(x + 3) / 6"


@register
class Identity(_Elementwise):
    type_name = "identity"
    summary = "y = x"
    args = ()


@register
class Softmax(Layer):
    type_name = "softmax"
    summary = "exp(x) / sum(exp(x)) along dim"
    args = (Arg("dim", Int(low=-64), -1, "counts the batch, as in PyTorch"),)

    dim: int

    def output_shape(self, x: Shape) -> Shape:
        self.expect_dim(x, self.dim, "dim")
        return x
