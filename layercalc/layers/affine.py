"""Learned vectors over one dim: scale (multiplied, ConvNeXt's layer scale) and shift (added,
RoBERTa's single token-type row).

They live apart from the normalisations (they normalise nothing) and from the activations (they
hold parameters): each is one learned vector broadcast over every other dim, as PyTorch stores it,
shaped (size, 1, ..., 1) so that `x * weight` or `x + bias` lines it up with its dim. Neither
multiplies anything a counter calls a multiply-accumulate: their MACs are 0.
"""

from __future__ import annotations

from typing import Any

from ..errors import ShapeError
from .base import Arg, Int, Layer, Saved, Shape, fmt_shape, register
from .peers import BIAS, row, rules


class _Vector(Layer):
    """One learned vector over one dim (not the batch), broadcast over the others."""

    args = (Arg("dim", Int(low=-64), -1, "counts the batch, as in PyTorch"),)
    shape_rule = "unchanged; dim (counting the batch, not 0) must exist"
    macs_rule = "0 (one elementwise operation, not multiply-accumulates)"
    # torchinfo charges a module whose parameter is `weight` or `bias` output.shape[0] × its
    # parameters; the other tools have no rule for a bare `*` or `+` with a parameter
    peer_rules = rules(torchinfo="N·size (params × output.shape[0])")
    param: str = ""  # the parameter's PyTorch-style name

    dim: int

    def axis(self, x: Shape) -> int:
        """The dim, normalised for shape x; the batch is refused (a per-sample vector has no meaning)."""
        d = self.expect_dim(x, self.dim, "dim")
        if d == 0:
            raise ShapeError(f"dim {self.dim} is the batch dimension of {fmt_shape(x)}; a learned vector"
                             " cannot run over the batch", value=self.dim)
        return d

    def output_shape(self, x: Shape) -> Shape:
        self.axis(x)
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        # trailing ones broadcast the vector over the dims after it (ConvNeXt's gamma is (C, 1, 1))
        d = self.axis(x)
        return {self.param: (x[d],) + (1,) * (len(x) - 1 - d)}

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return [row(BIAS, torchinfo=x[0] * x[self.axis(x)])]

    def reduce_to_param(self, g: Any, shape: tuple[int, ...]) -> Any:
        """A gradient of the input's shape summed over every dim the vector is broadcast along."""
        d = len(g.shape) - len(shape)  # the leading dims the parameter lacks (the batch and earlier)
        return g.sum(axis=tuple(range(d))).sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True)


@register
class Scale(_Vector):
    type_name = "scale"
    summary = "x times a learned vector over one dim (layer scale: ConvNeXt's gamma)"
    params_rule = "weight: the size of dim"
    example = ([4, 3, 3], {"dim": 1})
    param = "weight"

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        return x * params["weight"], x

    def backward(self, dy: Any, params: dict[str, Any], x: Any) -> tuple[Any, dict[str, Any]]:
        w = params["weight"]
        return dy * w, {"weight": self.reduce_to_param(dy * x, w.shape)}


@register
class Shift(_Vector):
    type_name = "shift"
    summary = "x plus a learned vector over one dim (RoBERTa's single token-type row)"
    args = (
        _Vector.args[0],
        Arg("rows", Int(), 1,
            "a table of this many vectors, the first added (BERT's token types, every token of type 0)"),
    )
    params_rule = "bias: rows × the size of dim"
    peer_rules = rules(torchinfo="N·rows·size (params × output.shape[0])")
    example = ([5, 4], {})
    param = "bias"

    rows: int

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        (shape,) = super().param_shapes(x).values()
        return {"bias": shape if self.rows == 1 else (self.rows, *shape)}

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return [row(BIAS, torchinfo=x[0] * self.rows * x[self.axis(x)])]

    def frozen_rows(self) -> dict[str, tuple[tuple[int, ...], str]]:
        # the other rows of a token-type table belong to types no token has here
        return {"bias": (tuple(range(1, self.rows)), "rows past the first are never added")} if self.rows > 1 else {}

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        return []  # an addition's gradient needs no values

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        bias = params["bias"]
        return x + (bias if self.rows == 1 else bias[0]), None

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        bias = params["bias"]
        if self.rows == 1:
            return dy, {"bias": self.reduce_to_param(dy, bias.shape)}
        grad = bias * 0  # the rows never added get none (bias's own dtype)
        grad[0] = self.reduce_to_param(dy, bias.shape[1:])
        return dy, {"bias": grad}
