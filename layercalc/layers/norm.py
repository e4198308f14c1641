"""Normalisation: batchnorm1d/2d, layernorm (over the last dimension) and groupnorm."""

from __future__ import annotations

from typing import ClassVar

from ..errors import ShapeError
from .base import Arg, Bool, Float, Int, Layer, Opt, Shape, fmt_shape, register


class _BatchNorm(Layer):
    """Per-channel normalisation with batch statistics; running mean/var buffers."""

    ranks: ClassVar[tuple[int, ...]] = (4,)
    layout: ClassVar[str] = ""
    args = (
        Arg("eps", Float(low=0.0), 1e-5),
        Arg("momentum", Opt(Float(low=0.0, high=1.0)), 0.1),
        Arg("affine", Bool(), True),
        Arg("track_running_stats", Bool(), True),
        Arg("num_features", Opt(Int()), None, "inferred from the input"),
    )

    affine: bool
    track_running_stats: bool
    num_features: int | None

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *self.ranks, layout=self.layout)
        self.expect_size("num_features", self.num_features, x[1])
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (x[1],), "bias": (x[1],)} if self.affine else {}

    def buffer_shapes(self, x: Shape) -> dict[str, Shape]:
        if not self.track_running_stats:
            return {}
        # num_batches_tracked is a 0-d counter: one element
        return {"running_mean": (x[1],), "running_var": (x[1],), "num_batches_tracked": ()}


@register
class BatchNorm1d(_BatchNorm):
    type_name = "batchnorm1d"
    summary = "batch normalisation of (N, C) or (N, C, L)"
    ranks = (2, 3)
    layout = "(N, C) or (N, C, L)"


@register
class BatchNorm2d(_BatchNorm):
    type_name = "batchnorm2d"
    summary = "batch normalisation of (N, C, H, W)"
    ranks = (4,)
    layout = "(N, C, H, W)"


@register
class LayerNorm(Layer):
    type_name = "layernorm"
    summary = "normalisation over the last dimension of each sample"
    args = (
        Arg("eps", Float(low=0.0), 1e-5),
        Arg("elementwise_affine", Bool(), True),
        Arg("bias", Bool(), True),
        Arg("normalized_shape", Opt(Int()), None, "inferred: the last dimension"),
    )

    elementwise_affine: bool
    bias: bool
    normalized_shape: int | None

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *range(2, 9), layout="(N, ..., features)")
        self.expect_size("normalized_shape", self.normalized_shape, x[-1])
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        if not self.elementwise_affine:
            return {}
        return {"weight": (x[-1],), "bias": (x[-1],)} if self.bias else {"weight": (x[-1],)}


@register
class GroupNorm(Layer):
    type_name = "groupnorm"
    summary = "normalisation over groups of channels of each sample"
    args = (
        Arg("num_groups", Int()),
        Arg("eps", Float(low=0.0), 1e-5),
        Arg("affine", Bool(), True),
        Arg("num_channels", Opt(Int()), None, "inferred from the input"),
    )

    num_groups: int
    affine: bool
    num_channels: int | None

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *range(2, 9), layout="(N, C, ...)")
        self.expect_size("num_channels", self.num_channels, x[1])
        if x[1] % self.num_groups:
            raise ShapeError(
                f"num_groups {self.num_groups} does not divide the {x[1]} channels of {fmt_shape(x)}",
                value=self.num_groups,
            )
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (x[1],), "bias": (x[1],)} if self.affine else {}
