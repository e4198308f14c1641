"""Layers that only move, drop or average values: dropout (identity at inference), flatten,
transpose, permute, reshape, select, narrow and mean. Dims count the batch, as in PyTorch; none of these
may move or remove the batch dimension. None of them multiplies anything: their MACs are 0."""

from __future__ import annotations

from typing import Any

from ..errors import SchemaError, ShapeError
from ..lazy import np
from .activation import Identity
from .peers import rules
from .base import Arg, Bool, Float, Index, Int, IntList, Layer, Saved, Shape, fmt_shape, numel, register


class _Dropout(Identity):
    """Zeroes elements with probability p while training; the identity in eval and in verify."""

    args = (Arg("p", Float(low=0.0, high=1.0), 0.5), Arg("inplace", Bool(), False))
    shape_rule = "unchanged"
    params_rule = "none"
    macs_rule = "0 (the identity at inference)"

    p: float

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # training keeps which elements were zeroed: a one-byte mask (none when nothing is dropped)
        return [Saved(numel(x), x[-1], mask=True)] if self.p > 0 else []


@register
class Dropout(_Dropout):
    type_name = "dropout"
    summary = "random zeroing of elements (identity at inference)"
    example = ([2, 3], {})


@register
class Dropout2d(_Dropout):
    type_name = "dropout2d"
    summary = "random zeroing of whole channels (identity at inference)"
    example = ([2, 3, 3], {})


class _Moves(Layer):
    """A layer that only rearranges values: no parameters, nothing any tool counts."""

    params_rule = "none"
    macs_rule = "0 (values are moved, not multiplied)"
    peer_rules = rules()

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        return []  # the backward moves the gradient back; it needs no values


@register
class Flatten(_Moves):
    type_name = "flatten"
    summary = "merge dims start_dim..end_dim (dims count the batch)"
    args = (Arg("start_dim", Int(low=-64), 1), Arg("end_dim", Int(low=-64), -1))
    shape_rule = "dims start_dim..end_dim (counting the batch) merge into one of their product"
    example = ([2, 3, 3], {})

    start_dim: int
    end_dim: int

    def output_shape(self, x: Shape) -> Shape:
        start = self.expect_dim(x, self.start_dim, "start_dim")
        end = self.expect_dim(x, self.end_dim, "end_dim")
        if start > end:
            raise ShapeError(f"start_dim {self.start_dim} comes after end_dim {self.end_dim}", value={"start_dim": self.start_dim, "end_dim": self.end_dim})
        return (*x[:start], numel(x[start : end + 1]), *x[end + 1 :])

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1 :]), x.shape

    def backward(self, dy: Any, params: dict[str, Any], x_shape: Any) -> tuple[Any, dict[str, Any]]:
        return dy.reshape(x_shape), {}


DIM = Int(low=-64)  # a PyTorch dim index; the shape it applies to decides whether it is in range


def _not_batch(layer: Layer, x: Shape, dim: int, arg: str) -> int:
    """Normalise a dim for x; the batch dim (0) is refused: every shape here keeps it first."""
    d = layer.expect_dim(x, dim, arg)
    if d == 0:
        raise ShapeError(f"{arg} {dim} is the batch dimension of {fmt_shape(x)}; it must stay first", value=dim)
    return d


@register
class Transpose(_Moves):
    type_name = "transpose"
    summary = "swaps two dims (not the batch): x.transpose(dim0, dim1)"
    args = (Arg("dim0", DIM), Arg("dim1", DIM))
    shape_rule = "dims dim0 and dim1 (counting the batch; neither may be 0) swap"
    example = ([2, 5], {"dim0": 1, "dim1": 2})

    dim0: int
    dim1: int

    def axes(self, x: Shape) -> tuple[int, int]:
        """The two dims, normalised for shape x."""
        return _not_batch(self, x, self.dim0, "dim0"), _not_batch(self, x, self.dim1, "dim1")

    def output_shape(self, x: Shape) -> Shape:
        a, b = self.axes(x)
        y = list(x)
        y[a], y[b] = x[b], x[a]
        return tuple(y)

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        a, b = self.axes(x.shape)
        return np.swapaxes(x, a, b), (a, b)

    def backward(self, dy: Any, params: dict[str, Any], axes: Any) -> tuple[Any, dict[str, Any]]:
        return np.swapaxes(dy, *axes), {}  # a swap is its own inverse


@register
class Permute(_Moves):
    type_name = "permute"
    summary = "reorders every dim: x.permute(dims); the batch stays first"
    args = (Arg("dims", IntList(low=-64, what="a list of dims like [0, 2, 1]")),)
    shape_rule = "dims reordered: output dim i is input dim dims[i] (counting the batch; dims[0] = 0)"
    example = ([2, 5], {"dims": [0, 2, 1]})

    dims: tuple[int, ...]

    def order(self, x: Shape) -> tuple[int, ...]:
        """The permutation, normalised for shape x; ShapeError unless it permutes every dim."""
        if len(self.dims) != len(x):
            raise ShapeError(
                f"dims {list(self.dims)} name {len(self.dims)} dims but the input {fmt_shape(x)} has {len(x)}",
                value=self.dims,
            )
        order = tuple(self.expect_dim(x, d, "dim") for d in self.dims)
        if sorted(order) != list(range(len(x))):
            raise ShapeError(f"dims {list(self.dims)} is not a permutation of the {len(x)} dims", value=self.dims)
        if order[0] != 0:
            raise ShapeError(f"dims {list(self.dims)} moves the batch dimension; it must stay first", value=self.dims)
        return order

    def output_shape(self, x: Shape) -> Shape:
        return tuple(x[d] for d in self.order(x))

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        order = self.order(x.shape)
        return np.transpose(x, order), order

    def backward(self, dy: Any, params: dict[str, Any], order: Any) -> tuple[Any, dict[str, Any]]:
        return np.transpose(dy, np.argsort(order)), {}  # the inverse permutation


@register
class Reshape(_Moves):
    type_name = "reshape"
    summary = "one sample's new shape (batch excluded); one entry may be -1"
    args = (Arg("shape", IntList(low=1, extra=(-1,), what="a list of sizes >= 1, one of them may be -1")),)
    shape_rule = "(N, *x) -> (N, *shape), the same number of values; a -1 entry of shape takes what is left"
    example = ([2, 6], {"shape": [3, -1]})

    shape: tuple[int, ...]

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.shape.count(-1) > 1:
            raise SchemaError(f"shape: only one entry may be -1, got {list(self.shape)}", value=list(self.shape))

    def output_shape(self, x: Shape) -> Shape:
        size, known = numel(x[1:]), numel(tuple(d for d in self.shape if d != -1))
        if -1 in self.shape:
            if size % known:
                raise ShapeError(
                    f"shape {list(self.shape)} cannot hold the {size} values of a sample of {fmt_shape(x)}",
                    value=list(self.shape),
                )
            return (x[0], *(size // known if d == -1 else d for d in self.shape))
        if known != size:
            raise ShapeError(
                f"shape {list(self.shape)} holds {known} values but a sample of {fmt_shape(x)} has {size}",
                value=list(self.shape),
            )
        return (x[0], *self.shape)

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        return x.reshape(x.shape[0], *self.shape), x.shape

    def backward(self, dy: Any, params: dict[str, Any], x_shape: Any) -> tuple[Any, dict[str, Any]]:
        return dy.reshape(x_shape), {}


@register
class Select(_Moves):
    type_name = "select"
    summary = "x.select(dim, index): one position of a dim, which disappears (not the batch)"
    args = (Arg("dim", DIM), Arg("index", Index(), doc="negative counts back, as PyTorch"))
    shape_rule = "dim (counting the batch, not 0) disappears: x.select(dim, index); index within its size"
    example = ([5, 4], {"dim": 1, "index": 0})

    dim: int
    index: int

    def where(self, x: Shape) -> tuple[int, int]:
        """(dim, index) normalised for shape x."""
        d = _not_batch(self, x, self.dim, "dim")
        if not -x[d] <= self.index < x[d]:
            raise ShapeError(f"index {self.index} is out of range for dim {self.dim} of size {x[d]}", value=self.index)
        return d, self.index % x[d]

    def output_shape(self, x: Shape) -> Shape:
        d, _ = self.where(x)
        return x[:d] + x[d + 1 :]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        d, i = self.where(x.shape)
        return np.take(x, i, axis=d), (x.shape, d, i)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        shape, d, i = cache
        dx = np.zeros(shape, dtype=dy.dtype)  # the other positions did not reach the output
        index: list[Any] = [slice(None)] * len(shape)
        index[d] = i
        dx[tuple(index)] = dy
        return dx, {}


@register
class Narrow(_Moves):
    type_name = "narrow"
    summary = "x.narrow(dim, start, length): length positions of a dim from start (not the batch)"
    args = (Arg("dim", DIM), Arg("start", Index(), doc="negative counts back, as PyTorch"), Arg("length", Int(low=0)))
    shape_rule = "dim (counting the batch, not 0) becomes length; start + length within its size"
    example = ([6, 4], {"dim": 1, "start": 1, "length": 3})

    dim: int
    start: int
    length: int

    def where(self, x: Shape) -> tuple[int, int]:
        """(dim, start) normalised for shape x; ShapeError when the window leaves the dim."""
        d = _not_batch(self, x, self.dim, "dim")
        if not -x[d] <= self.start <= x[d]:
            raise ShapeError(f"start {self.start} is out of range for dim {self.dim} of size {x[d]}", value=self.start)
        start = self.start % x[d] if self.start < 0 else self.start
        if start + self.length > x[d]:
            raise ShapeError(f"start {self.start} + length {self.length} exceeds dim {self.dim} of size {x[d]}",
                             value=self.length)
        return d, start

    def output_shape(self, x: Shape) -> Shape:
        d, _ = self.where(x)
        return x[:d] + (self.length,) + x[d + 1 :]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        d, start = self.where(x.shape)
        return np.take(x, range(start, start + self.length), axis=d), (x.shape, d, start)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        shape, d, start = cache
        dx = np.zeros(shape, dtype=dy.dtype)  # the positions outside the window did not reach the output
        index: list[Any] = [slice(None)] * len(shape)
        index[d] = slice(start, start + self.length)
        dx[tuple(index)] = dy
        return dx, {}


@register
class Mean(Layer):
    type_name = "mean"
    summary = "x.mean(dim, keepdim): the average over one dim (not the batch), e.g. token pooling"
    args = (Arg("dim", DIM), Arg("keepdim", Bool(), False))
    shape_rule = "dim (counting the batch, not 0) disappears, or stays as size 1 with keepdim"
    params_rule = "none"
    macs_rule = "0 (a sum and a division, not multiply-accumulates)"
    peer_rules = rules()
    example = ([5, 4], {"dim": 1})

    dim: int
    keepdim: bool

    def output_shape(self, x: Shape) -> Shape:
        d = _not_batch(self, x, self.dim, "dim")
        return x[:d] + ((1,) if self.keepdim else ()) + x[d + 1 :]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        d = self.dim % x.ndim
        return x.mean(axis=d, keepdims=self.keepdim), (x.shape, d)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        shape, d = cache
        # every value of the averaged dim gets an equal share of the gradient
        share = dy if self.keepdim else np.expand_dims(dy, d)
        return np.broadcast_to(share / shape[d], shape).copy(), {}
