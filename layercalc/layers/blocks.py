"""Composite blocks: residual (add), concat (join channels), multiply (elementwise product, broadcast
as PyTorch: gated MLPs, squeeze-excitation) and sequential (a named group).

A block's shape, parameters and cost all come from its children; it adds only its merge rule.
"""

from __future__ import annotations

from typing import Any

from ..errors import ShapeError
from ..lazy import np
from .peers import ADD, CONCAT, PRODUCT, row, rules
from .base import Arg, Layer, LayerList, Node, Shape, fmt_shape, register


class _Block(Layer):
    """A layer made of child layers: its parameters and buffers are theirs."""

    params_rule = "the sum of its children's"
    buffers_rule = "the sum of its children's"


@register
class Residual(_Block):
    type_name = "residual"
    summary = "out = body(x) + shortcut(x); shapes must match exactly"
    args = (
        Arg("body", LayerList()),
        Arg("shortcut", LayerList(min_len=0), [], "[] = identity"),
    )
    shape_rule = "body(x) and shortcut(x) (shortcut [] = x) must have equal shapes: that shape"
    macs_rule = "the sum of body's and shortcut's (the add itself: 0)"
    peer_rules = rules("the sum of body's and shortcut's counts; the add itself not counted")
    example = ([4], {"body": [{"linear": {"out_features": 4}}, "relu"]})

    body: list[Node]
    shortcut: list[Node]

    def sequences(self) -> list[tuple[str, list[Node]]]:
        return [("body", self.body), ("shortcut", self.shortcut)]

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        body, shortcut = outs
        if body != shortcut:
            raise ShapeError(
                f"body gives {fmt_shape(body)} but shortcut gives {fmt_shape(shortcut)}; a residual adds equal shapes",
                value=(body, shortcut),
            )
        return body

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return [row(ADD)]  # `out = body + shortcut`: no tool counts the add

    def merge(self, outs: list[Any]) -> Any:
        return outs[0] + outs[1]

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        return [dy, dy]  # an add passes the gradient to both terms


@register
class Concat(_Block):
    type_name = "concat"
    summary = "branch outputs joined on the channel dim (dim 1); [] is an identity branch"
    args = (Arg("branches", LayerList(depth=2)),)
    shape_rule = "every branch's output (a branch [] = x), equal but for dim 1, joined on dim 1: the sizes add"
    macs_rule = "the sum of the branches' (the copy itself: 0)"
    peer_rules = rules("the sum of the branches' counts; the concatenation not counted")
    example = ([2, 4, 4], {"branches": [[{"conv2d": {"out_channels": 2, "kernel_size": 1}}], []]})

    branches: list[list[Node]]

    def sequences(self) -> list[tuple[str, list[Node]]]:
        return [(f"branches.{i}", branch) for i, branch in enumerate(self.branches)]

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        first = outs[0]
        for i, out in enumerate(outs):
            if len(out) < 2 or len(out) != len(first) or out[:1] + out[2:] != first[:1] + first[2:]:
                raise ShapeError(
                    f"branch {i} gives {fmt_shape(out)} but branch 0 gives {fmt_shape(first)};"
                    " concat needs equal shapes except the channel dim",
                    value=(first, out),
                )
        return (first[0], sum(o[1] for o in outs), *first[2:])

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return [row(CONCAT)]  # a copy: no tool counts it

    def merge(self, outs: list[Any]) -> Any:
        return np.concatenate(outs, axis=1)

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        edges = np.cumsum([o.shape[1] for o in outs])[:-1]
        return np.split(dy, edges, axis=1)


def broadcast(shapes: list[Shape]) -> Shape | None:
    """The shape PyTorch broadcasts shapes to (aligned at the last dim; each size equal or 1), or None."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        sizes = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """A gradient of the broadcast shape summed back to one factor's shape (over the dims it was stretched along)."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


@register
class Multiply(_Block):
    type_name = "multiply"
    summary = "elementwise product of the branch outputs, broadcast as PyTorch (gated MLPs, squeeze-excitation)"
    args = (Arg("branches", LayerList(depth=2)),)
    shape_rule = "the branches' outputs broadcast as PyTorch does (aligned at the last dim, each size equal or 1)"
    macs_rule = "the sum of the branches' (the elementwise product itself: 0)"
    peer_rules = rules("the sum of the branches' counts; the product not counted")
    example = ([4], {"branches": [[{"linear": {"out_features": 6}}, "silu"], [{"linear": {"out_features": 6}}]]})

    branches: list[list[Node]]
    keeps_outputs = True  # d(a·b)/da = b: each factor's gradient needs the others

    def sequences(self) -> list[tuple[str, list[Node]]]:
        return [(f"branches.{i}", branch) for i, branch in enumerate(self.branches)]

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        if len(outs) < 2:
            raise ShapeError("multiply needs at least two branches to multiply", value=len(outs))
        for i, out in enumerate(outs):
            if broadcast([outs[0], out]) is None:
                raise ShapeError(
                    f"branch {i} gives {fmt_shape(out)} but branch 0 gives {fmt_shape(outs[0])}; multiply"
                    " broadcasts as PyTorch does: from the last dim, sizes must be equal or 1",
                    value=(outs[0], out),
                )
        shape = broadcast(outs)
        if shape is None:
            raise ShapeError(f"branches give {', '.join(map(fmt_shape, outs))}, which do not broadcast together;"
                             " from the last dim, sizes must be equal or 1", value=tuple(outs))
        return shape

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return [row(PRODUCT)]  # `a * b`: no tool counts the product

    def merge(self, outs: list[Any]) -> Any:
        y = outs[0]
        for out in outs[1:]:
            y = y * out
        return y

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        # product rule: each factor's gradient is dy times every other factor, summed back over
        # the dims broadcasting stretched that factor along
        grads = []
        for i in range(len(outs)):
            g = dy
            for j, out in enumerate(outs):
                if j != i:
                    g = g * out
            grads.append(unbroadcast(g, outs[i].shape))
        return grads


@register
class Sequential(_Block):
    type_name = "sequential"
    summary = "a named group of layers, shown as a level of hierarchy"
    args = (Arg("layers", LayerList()),)
    shape_rule = "its layers applied in order: the last one's output"
    macs_rule = "the sum of its layers'"
    peer_rules = rules("the sum of its layers' counts")
    example = ([4], {"layers": [{"linear": {"out_features": 3}}, "relu"]})
    creates_tensor = False  # its output is its last child's

    layers: list[Node]

    def sequences(self) -> list[tuple[str, list[Node]]]:
        return [("", self.layers)]

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        return outs[0]

    def merge(self, outs: list[Any]) -> Any:
        return outs[0]

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        return [dy]
