"""Convolutions over 1, 2 or 3 spatial dims: conv1d/2d/3d (correlation, as every framework) and
convtranspose1d/2d. One class per kind, parameterised by `rank`; the NumPy kernels are rank-generic."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import ShapeError
from .base import Arg, Bool, Int, Ints, Layer, Opt, Shape, fmt_shape, numel, register
from .counting import Grad
from .peers import BIAS, CONV, row, rules
from .geometry import conv_out, conv_transpose_out, per_dim, same_padding


def fmt_size(values: tuple[int, ...]) -> str:
    """(3, 3) -> '3', (3, 5) -> '3x5': how a kernel size reads in a message."""
    return str(values[0]) if len(set(values)) == 1 else fmt_shape(values)


class _ConvBase(Layer):
    """Shared rules of the convolutions of spatial rank `rank` (input N, C, *spatial)."""

    rank: ClassVar[int] = 2
    feature_dim = 1  # channels: 64→128
    feature_args = ("in_channels", "out_channels")
    input_for_weights = True

    in_channels: int | None
    out_channels: int
    groups: int
    bias: bool

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        # normalised once: shape rules run for every copy of every entry
        self.kernel: tuple[int, ...] = per_dim(self.kernel_size, self.rank)  # type: ignore[attr-defined]
        self.strides: tuple[int, ...] = per_dim(self.stride, self.rank)  # type: ignore[attr-defined]
        self.dilations: tuple[int, ...] = per_dim(self.dilation, self.rank)  # type: ignore[attr-defined]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # ∇k (x ⋆ ∇y) and ∇x (∇y with the flipped kernel) each cost one forward; the weight
        # gradient's groups are stated, as FlopCounterMode prices it as an ungrouped conv's
        fwd = self.macs(x, y)
        return [Grad(fwd, weight=True, groups=self.groups)] + ([Grad(fwd, weight=False)] if input_grad else [])

    def check_channels(self, x: Shape) -> int:
        """Check rank, in_channels and groups against the input; return its channel count."""
        self.expect_spatial(x, self.rank)
        c_in = x[1]
        self.expect_size("in_channels", self.in_channels, c_in)
        for what, n in (("in_channels", c_in), ("out_channels", self.out_channels)):
            if n % self.groups:
                raise ShapeError(f"groups {self.groups} does not divide {what} {n}", value=self.groups)
        return c_in


def _conv_args(rank: int, transposed: bool) -> tuple[Arg, ...]:
    pad = Ints(low=0, rank=rank) if transposed else Ints(low=0, rank=rank, words=("same", "valid"))
    args = [
        Arg("out_channels", Int()),
        Arg("kernel_size", Ints(rank=rank)),
        Arg("stride", Ints(rank=rank), 1),
        Arg("padding", pad, 0),
    ]
    if transposed:
        args.append(Arg("output_padding", Ints(low=0, rank=rank), 0))
    args += [
        Arg("dilation", Ints(rank=rank), 1),
        Arg("groups", Int(), 1),
        Arg("bias", Bool(), True),
        Arg("in_channels", Opt(Int()), None, "inferred from the input"),
    ]
    return tuple(args)


class _Conv(_ConvBase):
    """y = x ⋆ k + b: cross-correlation over rank spatial dims."""

    shape_rule = ("(N, C_in, *S) -> (N, out_channels, *S_out), per spatial dim S_out = floor((S + 2·padding"
                  " − dilation·(kernel_size − 1) − 1) / stride) + 1; padding 'same' keeps S (stride 1 only),"
                  " 'valid' is 0; groups divides C_in and out_channels; in_channels must equal C_in")
    params_rule = "weight out_channels·(C_in/groups)·prod(kernel_size), + bias out_channels if bias"
    macs_rule = "numel(y)·(C_in/groups)·prod(kernel_size) = N·out_channels·prod(S_out)·(C_in/groups)·prod(kernel_size)"
    peer_rules = rules(
        torch="as layercalc", thop="as layercalc",
        fvcore="as layercalc; not counted with padding 'same' or 'valid' (an aten op it has no handle for)",
        ptflops="as layercalc, + numel(y) for the bias if bias",
        torchinfo="as layercalc, + numel(y) if bias",
    )

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.pads = self._pads()

    def _pads(self) -> list[tuple[int, int]]:
        """(before, after) zero padding per spatial dim; 'same' pads asymmetrically as PyTorch."""
        if self.padding == "valid":  # type: ignore[attr-defined]
            return [(0, 0)] * self.rank
        if self.padding == "same":  # type: ignore[attr-defined]
            return [same_padding(k, d) for k, d in zip(self.kernel, self.dilations)]
        return [(p, p) for p in per_dim(self.padding, self.rank)]  # type: ignore[attr-defined]

    def output_shape(self, x: Shape) -> Shape:
        self.check_channels(x)
        if self.padding == "same" and any(s != 1 for s in self.strides):  # type: ignore[attr-defined]
            raise ShapeError("padding='same' needs stride 1 (as in PyTorch)", value=self.strides)
        spatial = x[2:]
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, self.pads))
        reach = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilations))
        if any(r > p for r, p in zip(reach, padded)):
            what = "kernel_size" if reach == self.kernel else "dilated kernel"
            raise ShapeError(f"{what} {fmt_size(reach)} exceeds padded input {fmt_shape(padded)}", value=reach)
        out = tuple(
            conv_out(n, k, s, lo + hi, d)
            for n, k, s, (lo, hi), d in zip(spatial, self.kernel, self.strides, self.pads, self.dilations)
        )
        return (x[0], self.out_channels, *out)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (self.out_channels, x[1] // self.groups, *self.kernel)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self, x: Shape, y: Shape) -> int:
        # N · c_out · spatial_out · (c_in/groups) · prod(kernel): one MAC per kernel tap per output.
        return numel(y) * (x[1] // self.groups) * numel(self.kernel)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        macs, bias = self.macs(x, y), numel(y) if self.bias else 0
        # padding='same'/'valid' reaches aten as conv2d.padding, which fvcore has no handle for
        fvcore = None if isinstance(self.padding, str) else macs  # type: ignore[attr-defined]
        return [
            row(CONV, layercalc=macs, torch=macs, fvcore=fvcore, thop=macs, ptflops=(macs, 0), torchinfo=macs),
            row(BIAS, ptflops=(bias, 0), torchinfo=bias),
        ]

    def work_elements(self, x: Shape) -> int:
        # the im2col columns (C·∏k rows, N·∏out columns: 27 times the input for a 3x3x3 kernel)
        # kept for backward, and the backward's column gradient of the same size
        return 2 * x[1] * numel(self.kernel) * numel(self.output_shape(x)[2:]) * x[0]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        from ..kernels.conv import conv_forward

        return conv_forward(x, params["weight"], params.get("bias"), self.strides, self.pads, self.dilations, self.groups)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        from ..kernels.conv import conv_backward

        dx, dw, db = conv_backward(dy, cache)
        return dx, ({"weight": dw, "bias": db} if db is not None else {"weight": dw})

    def identities(self, x: Any, params: dict[str, Any], rng: Any) -> list[tuple[str, float, float]]:
        """The seed's identities on a reduced copy of this layer (this layer's own forward/backward):
        vec(x ⋆ k) = K_conv·vec(x), ∇x = K_convᵀ·vec(∇y), and ∇x = the full correlation of the
        zero-inserted ∇y with the flipped kernel."""
        from copy import copy  # imported here: only verify needs it

        from ..kernels.conv import conv_dx_full_correlation, kconv_full

        small = copy(self)  # at most 2 groups of 2 channels, a few windows of each size
        small.groups = min(self.groups, 2)
        c_in = small.groups * min(x.shape[1] // self.groups, 2)
        small.out_channels = small.groups * min(self.out_channels // self.groups, 2)
        spatial = [min(n, d * (k - 1) + 1 + 2 * s) for n, k, s, d in zip(x.shape[2:], self.kernel, self.strides, self.dilations)]
        xs = rng.standard_normal((1, c_in, *spatial))
        shapes = small.param_shapes(xs.shape)
        ps = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
        y, cache = small.forward(xs, ps)
        dy = rng.standard_normal(y.shape)
        dx, _ = small.backward(dy, ps, cache)
        geometry = (self.strides, self.pads, self.dilations, small.groups)
        k = kconv_full(ps["weight"], xs.shape, *geometry)
        bias = ps["bias"].reshape(-1, *([1] * (y.ndim - 2))) if "bias" in ps else 0.0
        seed_dx = conv_dx_full_correlation(dy, ps["weight"], xs.shape, *geometry)
        return [
            _identity("vec(x ⋆ k) = K_conv · vec(x)", (k @ xs.ravel()).reshape(y.shape[1:]) + bias, y[0]),
            _identity("∇x = K_convᵀ · vec(∇y)", k.T @ dy.ravel(), dx.ravel()),
            _identity("∇x = ∇y ⋆full flipped k", seed_dx, dx),
        ]


def _identity(what: str, expected: Any, got: Any) -> tuple[str, float, float]:
    """(what, max abs difference, tolerance): exact up to float64 rounding."""
    import numpy as np

    got = np.asarray(got)
    if got.shape != np.shape(expected):
        return what, float("inf"), 0.0
    scale = float(np.max(np.abs(expected))) if got.size else 0.0
    return what, float(np.max(np.abs(got - expected))) if got.size else 0.0, 1e-9 * (1.0 + scale)


@register
class Conv1d(_Conv):
    type_name = "conv1d"
    summary = "1-D convolution over (N, C, L)"
    rank = 1
    args = _conv_args(1, transposed=False)
    example = ([2, 8], {"out_channels": 4, "kernel_size": 3})


@register
class Conv2d(_Conv):
    type_name = "conv2d"
    summary = "2-D convolution over (N, C, H, W)"
    rank = 2
    args = _conv_args(2, transposed=False)
    example = ([3, 8, 8], {"out_channels": 4, "kernel_size": 3, "padding": 1})


@register
class Conv3d(_Conv):
    type_name = "conv3d"
    summary = "3-D convolution over (N, C, D, H, W)"
    rank = 3
    args = _conv_args(3, transposed=False)
    example = ([2, 4, 6, 6], {"out_channels": 4, "kernel_size": 3})


class _ConvTranspose(_ConvBase):
    """The adjoint of a conv of the same kernel, stride, padding and dilation: (N, C_in, *S) -> (N, C_out, *out)."""

    shape_rule = ("(N, C_in, *S) -> (N, out_channels, *S_out), per spatial dim S_out = (S − 1)·stride − 2·padding"
                  " + dilation·(kernel_size − 1) + output_padding + 1; output_padding < stride or dilation;"
                  " groups divides C_in and out_channels; in_channels must equal C_in")
    params_rule = "weight C_in·(out_channels/groups)·prod(kernel_size), + bias out_channels if bias"
    macs_rule = ("numel(x)·(out_channels/groups)·prod(kernel_size): every input element scatters a"
                 " (out_channels/groups)·prod(kernel_size) patch")
    peer_rules = rules(
        torch="as layercalc", fvcore="as layercalc",
        thop="numel(y)·(C_in/groups)·prod(kernel_size): the output size, so a strided transpose is overcounted",
        ptflops="as layercalc, + numel(y) for the bias if bias",
        torchinfo="C_in·(out_channels/groups)·prod(kernel_size)·N·prod(S_out), + numel(y) if bias",
    )

    def output_shape(self, x: Shape) -> Shape:
        self.check_channels(x)
        opad = per_dim(self.output_padding, self.rank)  # type: ignore[attr-defined]
        pad = per_dim(self.padding, self.rank)  # type: ignore[attr-defined]
        for o, s, d in zip(opad, self.strides, self.dilations):
            if o >= s and o >= d:
                raise ShapeError(f"output_padding {o} must be smaller than stride or dilation", value=o)
        out = tuple(
            conv_transpose_out(n, k, s, p, d, o)
            for n, k, s, p, d, o in zip(x[2:], self.kernel, self.strides, pad, self.dilations, opad)
        )
        if any(n < 1 for n in out):
            raise ShapeError(f"padding {fmt_size(pad)} leaves no output (size {fmt_shape(out)})", value=pad)
        return (x[0], self.out_channels, *out)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        # PyTorch stores the transposed kernel as (c_in, c_out/groups, *kernel).
        shapes: dict[str, Shape] = {"weight": (x[1], self.out_channels // self.groups, *self.kernel)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self, x: Shape, y: Shape) -> int:
        # Every input pixel scatters a (c_out/groups)·kh·kw patch: N · c_in · spatial_in · ...
        return numel(x) * (self.out_channels // self.groups) * numel(self.kernel)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        macs, bias = self.macs(x, y), numel(y) if self.bias else 0
        k = numel(self.kernel)
        # torchinfo: weight numel x N x output spatial; thop: output elements x (c_in/groups) x k;
        # both charge the output size, not the input's, so they overcount a strided transpose
        weight = x[1] * (self.out_channels // self.groups) * k
        torchinfo = weight * y[0] * numel(y[2:])
        thop = numel(y) * (x[1] // self.groups) * k
        return [
            row(CONV, layercalc=macs, torch=macs, fvcore=macs, thop=thop, ptflops=(macs, 0), torchinfo=torchinfo),
            row(BIAS, ptflops=(bias, 0), torchinfo=bias),
        ]

    def work_elements(self, x: Shape) -> int:
        # the columns every input position scatters (C_out·∏k rows, N·∏S columns) in the forward
        # (a stride-1 one may gather instead, in slabs of at most the same), and the columns of
        # dL/dy of the same size in the backward; neither is kept past its call
        return numel(self.kernel) * self.out_channels * numel(x[2:]) * x[0]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        from ..kernels.conv import conv_transpose_forward

        pad, opad = per_dim(self.padding, self.rank), per_dim(self.output_padding, self.rank)  # type: ignore[attr-defined]
        return conv_transpose_forward(x, params["weight"], params.get("bias"), self.strides, pad, opad, self.dilations, self.groups)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        from ..kernels.conv import conv_transpose_backward

        dx, dw, db = conv_transpose_backward(dy, cache)
        return dx, ({"weight": dw, "bias": db} if db is not None else {"weight": dw})

    def identities(self, x: Any, params: dict[str, Any], rng: Any) -> list[tuple[str, float, float]]:
        """A transposed conv is the adjoint of a conv: y = K_convᵀ·vec(x) and ∇x = K_conv·vec(∇y)."""
        from copy import copy

        from ..kernels.conv import kconv_adjoint

        small = copy(self)
        small.groups = min(self.groups, 2)
        c_in = small.groups * min(x.shape[1] // self.groups, 2)
        small.out_channels = small.groups * min(self.out_channels // self.groups, 2)
        spatial = [min(n, 3) for n in x.shape[2:]]
        xs = rng.standard_normal((1, c_in, *spatial))
        ps = {name: rng.standard_normal(shape) for name, shape in small.param_shapes(xs.shape).items()}
        ps.pop("bias", None)
        small.bias = False
        y, cache = small.forward(xs, ps)
        dy = rng.standard_normal(y.shape)
        dx, _ = small.backward(dy, ps, cache)
        pad = per_dim(self.padding, self.rank)  # type: ignore[attr-defined]
        # the conv whose adjoint this is maps y's shape back to x's: same kernel, stride, padding
        k = kconv_adjoint(ps["weight"], xs.shape, y.shape, self.strides, tuple((p, p) for p in pad), self.dilations, small.groups)
        return [
            _identity("y = K_convᵀ · vec(x)", (k.T @ xs.ravel()).reshape(y.shape[1:]), y[0]),
            _identity("∇x = K_conv · vec(∇y)", k @ dy.ravel(), dx.ravel()),
        ]



@register
class ConvTranspose1d(_ConvTranspose):
    type_name = "convtranspose1d"
    summary = "1-D transposed convolution over (N, C, L) (the gradient of conv1d w.r.t. its input)"
    rank = 1
    args = _conv_args(1, transposed=True)
    example = ([4, 5], {"out_channels": 2, "kernel_size": 3, "stride": 2})


@register
class ConvTranspose2d(_ConvTranspose):
    type_name = "convtranspose2d"
    summary = "2-D transposed convolution (the gradient of conv2d w.r.t. its input)"
    rank = 2
    args = _conv_args(2, transposed=True)
    example = ([4, 4, 4], {"out_channels": 2, "kernel_size": 2, "stride": 2})
