"""Layers that only move or drop values: dropout (identity at inference) and flatten."""

from __future__ import annotations

from typing import Any

from ..errors import ShapeError
from .activation import Identity
from .base import Arg, Bool, Float, Int, Layer, Shape, numel, register


class _Dropout(Identity):
    """Zeroes elements with probability p while training; the identity in eval and in verify."""

    args = (Arg("p", Float(low=0.0, high=1.0), 0.5), Arg("inplace", Bool(), False))


@register
class Dropout(_Dropout):
    type_name = "dropout"
    summary = "random zeroing of elements (identity at inference)"


@register
class Dropout2d(_Dropout):
    type_name = "dropout2d"
    summary = "random zeroing of whole channels (identity at inference)"


@register
class Flatten(Layer):
    type_name = "flatten"
    summary = "merge dims start_dim..end_dim (dims count the batch)"
    args = (Arg("start_dim", Int(low=-64), 1), Arg("end_dim", Int(low=-64), -1))

    start_dim: int
    end_dim: int

    def output_shape(self, x: Shape) -> Shape:
        start = self.expect_dim(x, self.start_dim, "start_dim")
        end = self.expect_dim(x, self.end_dim, "end_dim")
        if start > end:
            raise ShapeError(f"start_dim {self.start_dim} comes after end_dim {self.end_dim}", value=self.start_dim)
        return (*x[:start], numel(x[start : end + 1]), *x[end + 1 :])

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1 :]), x.shape

    def backward(self, dy: Any, params: dict[str, Any], x_shape: Any) -> tuple[Any, dict[str, Any]]:
        return dy.reshape(x_shape), {}
