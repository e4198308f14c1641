"""Normalisation: batchnorm1d/2d/3d, layernorm and rmsnorm (over the last dimension), groupnorm and
layernorm2d (over the channels of (N, C, H, W), as torchvision's ConvNeXt)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import ShapeError
from ..lazy import np
from .peers import NORM, row, rules
from .base import Arg, Bool, Float, Int, Layer, Opt, Shape, fmt_shape, numel, register


def normalize(x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any]:
    """(x - mean) / sqrt(var + eps) over axes (biased variance, as PyTorch); returns (xhat, 1/std)."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    inv_std = 1.0 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + eps)
    return centered * inv_std, inv_std


def normalize_backward(dxhat: Any, xhat: Any, inv_std: Any, axes: tuple[int, ...]) -> Any:
    """dL/dx from dL/dxhat: the mean and variance depend on every x, hence the two mean terms."""
    return inv_std * (
        dxhat - dxhat.mean(axis=axes, keepdims=True) - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
    )


def _channel(v: Any, ndim: int) -> Any:
    """A per-channel vector shaped to broadcast over (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class _ChannelAffine(Layer):
    """Normalisation followed by a per-channel scale and shift (batchnorm, groupnorm)."""

    affine: bool

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (x[1],), "bias": (x[1],)} if self.affine else {}

    def stats_axes(self, x: Any) -> tuple[tuple[int, ...], Any]:
        """(axes to normalise over, x reshaped for that) for this normalisation."""
        raise NotImplementedError

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        axes, grouped = self.stats_axes(x)
        xhat, inv_std = normalize(grouped, axes, self.eps)  # type: ignore[attr-defined]
        xhat = xhat.reshape(x.shape)
        y = xhat
        if self.affine:
            y = xhat * _channel(params["weight"], x.ndim) + _channel(params["bias"], x.ndim)
        return y, (xhat, inv_std, x.shape)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        xhat, inv_std, shape = cache
        grads: dict[str, Any] = {}
        dxhat = dy
        if self.affine:
            per_channel = (0, *range(2, dy.ndim))
            grads = {"weight": (dy * xhat).sum(axis=per_channel), "bias": dy.sum(axis=per_channel)}
            dxhat = dy * _channel(params["weight"], dy.ndim)
        axes, grouped = self.stats_axes(dxhat)
        _, xhat_grouped = self.stats_axes(xhat)
        return normalize_backward(grouped, xhat_grouped, inv_std, axes).reshape(shape), grads


class _BatchNorm(_ChannelAffine):
    """Per-channel normalisation with batch statistics; running mean/var buffers.

    verify runs it in training mode (batch statistics), where the backward pass is non-trivial.
    """

    ranks: ClassVar[tuple[int, ...]] = (4,)
    layout: ClassVar[str] = ""
    args = (
        Arg("eps", Float(low=0.0), 1e-5),
        Arg("momentum", Opt(Float(low=0.0, high=1.0)), 0.1),
        Arg("affine", Bool(), True),
        Arg("track_running_stats", Bool(), True),
        Arg("num_features", Opt(Int()), None, "inferred from the input"),
    )
    shape_rule = "unchanged: (N, C, ...); num_features must equal C"
    params_rule = "weight C and bias C if affine: 2·C"
    buffers_rule = "running_mean C, running_var C and num_batches_tracked 1 if track_running_stats: 2·C + 1"
    macs_rule = "0 (a normalisation; the peer tools count its elementwise ops, see below)"
    peer_rules = rules(
        fvcore=("numel(x), 2·numel(x) if affine (running statistics); without track_running_stats the batch"
                " statistics cost as a full norm: 4·numel(x), 5·numel(x) if affine"),
        thop="2·numel(x), 4·numel(x) if affine",
        ptflops="numel(x), 2·numel(x) if affine",
        torchinfo="N·2·C if affine (params × output.shape[0]), else not counted",
    )
    inert_args = ("eps", "momentum")

    affine: bool
    track_running_stats: bool
    num_features: int | None

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *self.ranks, layout=self.layout)
        self.expect_size("num_features", self.num_features, x[1])
        if not self.track_running_stats and x[0] * numel(x[2:]) == 1:
            # without running statistics even inference normalises with the batch's own: PyTorch refuses one value
            raise ShapeError(f"batch statistics of one value per channel: input {fmt_shape(x)}", value=x)
        return x

    def buffer_shapes(self, x: Shape) -> dict[str, Shape]:
        if not self.track_running_stats:
            return {}
        # num_batches_tracked is a 0-d counter: one element
        return {"running_mean": (x[1],), "running_var": (x[1],), "num_batches_tracked": ()}

    def stats_axes(self, x: Any) -> tuple[tuple[int, ...], Any]:
        return (0, *range(2, x.ndim)), x

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, a = numel(x), self.affine
        # fvcore charges batch statistics (no running ones: even inference computes them) as a full norm
        fvcore = (2 * n if a else n) if self.track_running_stats else (5 * n if a else 4 * n)
        return [row(NORM, fvcore=fvcore, thop=4 * n if a else 2 * n, ptflops=(2 * n if a else n, 0),
                    torchinfo=x[0] * 2 * x[1] if a else None)]


@register
class BatchNorm1d(_BatchNorm):
    type_name = "batchnorm1d"
    summary = "batch normalisation of (N, C) or (N, C, L)"
    ranks = (2, 3)
    layout = "(N, C) or (N, C, L)"
    example = ([4, 6], {})


@register
class BatchNorm2d(_BatchNorm):
    type_name = "batchnorm2d"
    summary = "batch normalisation of (N, C, H, W)"
    ranks = (4,)
    layout = "(N, C, H, W)"
    example = ([4, 5, 5], {})


@register
class BatchNorm3d(_BatchNorm):
    type_name = "batchnorm3d"
    summary = "batch normalisation of (N, C, D, H, W)"
    ranks = (5,)
    layout = "(N, C, D, H, W)"
    example = ([4, 3, 3, 3], {})


class _LastDimNorm(Layer):
    """Normalisations over the last dimension: the shape passes through; normalized_shape must match it."""

    normalized_shape: int | None

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *range(2, 9), layout="(N, ..., features)")
        self.expect_size("normalized_shape", self.normalized_shape, x[-1])
        return x


@register
class LayerNorm(_LastDimNorm):
    type_name = "layernorm"
    summary = "normalisation over the last dimension of each sample"
    args = (
        Arg("eps", Float(low=0.0), 1e-5),
        Arg("elementwise_affine", Bool(), True),
        Arg("bias", Bool(), True),
        Arg("normalized_shape", Opt(Int()), None, "inferred: the last dimension"),
    )
    shape_rule = "unchanged: (N, ..., E); normalized_shape must equal E, the last dim"
    params_rule = "weight E, + bias E if bias, when elementwise_affine (else none)"
    macs_rule = "0 (a normalisation; the peer tools count its elementwise ops, see below)"
    peer_rules = rules(
        fvcore="5·numel(x), 4·numel(x) without elementwise_affine",
        thop="4·numel(x), 2·numel(x) without elementwise_affine",
        ptflops="numel(x) (it looks for `.affine`, which layernorm lacks)",
        torchinfo="N·params (params × output.shape[0]); not counted without elementwise_affine",
    )
    inert_args = ("eps",)
    example = ([5, 8], {})

    elementwise_affine: bool
    bias: bool
    normalized_shape: int | None

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        if not self.elementwise_affine:
            return {}
        return {"weight": (x[-1],), "bias": (x[-1],)} if self.bias else {"weight": (x[-1],)}

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, a = numel(x), self.elementwise_affine
        params = sum(numel(s) for s in self.param_shapes(x).values())
        # ptflops looks for `.affine`, which layernorm lacks: always one op per element
        return [row(NORM, fvcore=5 * n if a else 4 * n, thop=4 * n if a else 2 * n, ptflops=(n, 0),
                    torchinfo=x[0] * params if params else None)]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        xhat, inv_std = normalize(x, (-1,), self.eps)  # type: ignore[attr-defined]
        y = xhat * params["weight"] if "weight" in params else xhat
        if "bias" in params:
            y = y + params["bias"]
        return y, (xhat, inv_std)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        xhat, inv_std = cache
        grads: dict[str, Any] = {}
        lead = tuple(range(dy.ndim - 1))
        if "weight" in params:
            grads["weight"] = (dy * xhat).sum(axis=lead)
        if "bias" in params:
            grads["bias"] = dy.sum(axis=lead)
        dxhat = dy * params["weight"] if "weight" in params else dy
        return normalize_backward(dxhat, xhat, inv_std, (-1,)), grads


@register
class GroupNorm(_ChannelAffine):
    type_name = "groupnorm"
    summary = "normalisation over groups of channels of each sample"
    args = (
        Arg("num_groups", Int()),
        Arg("eps", Float(low=0.0), 1e-5),
        Arg("affine", Bool(), True),
        Arg("num_channels", Opt(Int()), None, "inferred from the input"),
    )
    shape_rule = "unchanged: (N, C, ...); num_groups divides C; num_channels must equal C"
    params_rule = "weight C and bias C if affine: 2·C"
    macs_rule = "0 (a normalisation; the peer tools count its elementwise ops, see below)"
    peer_rules = rules(
        fvcore="5·numel(x), 4·numel(x) without affine",
        ptflops="2·numel(x), numel(x) without affine",
        torchinfo="N·2·C if affine (params × output.shape[0]), else not counted",
    )
    inert_args = ("eps",)
    example = ([6, 4, 4], {"num_groups": 2})

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
        if x[0] * (x[1] // self.num_groups) * numel(x[2:]) == 1:  # PyTorch's own check (it counts the batch)
            raise ShapeError(f"groupnorm would normalise single values: input {fmt_shape(x)}", value=x)
        return x

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, a = numel(x), self.affine  # thop has no rule for groupnorm
        return [row(NORM, fvcore=5 * n if a else 4 * n, ptflops=(2 * n if a else n, 0),
                    torchinfo=x[0] * 2 * x[1] if a else None)]

    def stats_axes(self, x: Any) -> tuple[tuple[int, ...], Any]:
        # each sample's channels split into num_groups groups, normalised per (sample, group)
        return (2,), x.reshape(x.shape[0], self.num_groups, -1)


@register
class RMSNorm(_LastDimNorm):
    type_name = "rmsnorm"
    summary = "x / sqrt(mean(x²) + eps) over the last dimension, times a learned scale"
    args = (
        Arg("eps", Opt(Float(low=0.0)), None, "null = the dtype's machine epsilon, as PyTorch"),
        Arg("elementwise_affine", Bool(), True),
        Arg("normalized_shape", Opt(Int()), None, "inferred: the last dimension"),
    )
    shape_rule = "unchanged: (N, ..., E); normalized_shape must equal E, the last dim"
    params_rule = "weight E if elementwise_affine (else none)"
    macs_rule = "0 (a normalisation)"
    peer_rules = rules(torchinfo="N·E if elementwise_affine (params × output.shape[0]), else not counted")
    inert_args = ("eps",)
    example = ([5, 8], {})

    eps: float | None
    elementwise_affine: bool
    normalized_shape: int | None

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (x[-1],)} if self.elementwise_affine else {}

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        # only torchinfo counts it (output.shape[0] x its parameters); fvcore has no handle for
        # aten::rms_norm, thop and ptflops no rule for nn.RMSNorm, FlopCounterMode counts no norm
        return [row(NORM, torchinfo=x[0] * x[-1])] if self.elementwise_affine else []

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        eps = float(np.finfo(x.dtype).eps) if self.eps is None else self.eps
        inv_rms = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
        xhat = x * inv_rms
        return (xhat * params["weight"] if "weight" in params else xhat), (xhat, inv_rms)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        xhat, inv_rms = cache
        grads: dict[str, Any] = {}
        dxhat = dy
        if "weight" in params:
            grads["weight"] = (dy * xhat).sum(axis=tuple(range(dy.ndim - 1)))
            dxhat = dy * params["weight"]
        # the rms depends on every x of the row: d(x/rms)/dx = (I - xhat xhatᵀ / E) / rms
        return inv_rms * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)), grads


@register
class LayerNorm2d(Layer):
    type_name = "layernorm2d"
    summary = "layer normalisation over the channels of (N, C, H, W) at each position (torchvision's LayerNorm2d)"
    args = (Arg("eps", Float(low=0.0), 1e-6),)
    shape_rule = "unchanged: (N, C, H, W)"
    params_rule = "weight C and bias C: 2·C"
    macs_rule = "0 (a normalisation; the peer tools count its elementwise ops, see below)"
    peer_rules = rules(
        fvcore="5·numel(x) (its aten::layer_norm handle)",
        torchinfo="N·2·C (params × output.shape[0])",
    )
    inert_args = ("eps",)
    example = ([4, 3, 3], {})

    eps: float

    def output_shape(self, x: Shape) -> Shape:
        self.expect_spatial(x, 2)
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"weight": (x[1],), "bias": (x[1],)}

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        # a subclass of nn.LayerNorm that permutes and calls F.layer_norm: thop and ptflops match
        # modules by exact class and see none; fvcore sees the aten::layer_norm inside
        return [row(NORM, fvcore=5 * numel(x), torchinfo=x[0] * 2 * x[1])]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        xhat, inv_std = normalize(x, (1,), self.eps)
        return xhat * _channel(params["weight"], 4) + _channel(params["bias"], 4), (xhat, inv_std)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        xhat, inv_std = cache
        grads = {"weight": (dy * xhat).sum(axis=(0, 2, 3)), "bias": dy.sum(axis=(0, 2, 3))}
        return normalize_backward(dy * _channel(params["weight"], 4), xhat, inv_std, (1,)), grads
