"""Pooling over 1, 2 or 3 spatial dims: max and average (fixed windows) and their adaptive versions.

One class per kind, parameterised by `rank`; the NumPy kernels are rank-generic (adaptive max
pooling, 1-D and 2-D only, runs a 1-D input with a height of 1)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import ShapeError
from .base import Arg, Bool, Ints, Layer, Opt, Shape, fmt_shape, numel, register
from .geometry import per_dim, pool_out
from .peers import POOL, row, rules


def lift(a: Any, rank: int) -> Any:
    """A rank-1 array (N, C, L) as (N, C, 1, L), for the 2-D-only adaptive max pooling kernel."""
    return a[:, :, None, :] if rank == 1 else a


def drop(a: Any, rank: int) -> Any:
    """Undo lift."""
    return a[:, :, 0, :] if rank == 1 else a


# the rules in words (`layercalc layers TYPE`), max pools first, then average pools
_WINDOW = ("(N, C, *S) -> (N, C, *S_out), per spatial dim S_out = floor((S + 2·padding − {reach}) / stride) + 1"
           " (ceil with ceil_mode, the last window starting inside the input or its left padding);"
           " stride null = kernel_size; padding <= kernel_size / 2")
MAX_SHAPE = _WINDOW.format(reach="dilation·(kernel_size − 1) − 1")
AVG_SHAPE = _WINDOW.format(reach="kernel_size")
_PTFLOPS_POOL = "2·numel(x): numel(x) in its module hook, numel(x) again in its F.*pool* patch"
MAX_PEERS = rules(ptflops=_PTFLOPS_POOL)
AVG_PEERS = rules(thop="numel(y)", ptflops=_PTFLOPS_POOL)
ADAPTIVE_SHAPE = "(N, C, *S) -> (N, C, *output_size); a null entry of output_size keeps that dim"
ADAPTIVE_MAX_PEERS = MAX_PEERS
_THOP_ADAPTIVE = "int((prod(S / output_size) + 1)·numel(y)), in floating point"
ADAPTIVE_AVG_PEERS = rules(thop=_THOP_ADAPTIVE, ptflops=_PTFLOPS_POOL)  # fvcore handles only the 2-D op
ADAPTIVE_AVG2D_PEERS = rules(fvcore="numel(x)", thop=_THOP_ADAPTIVE, ptflops=_PTFLOPS_POOL)


class _Pool(Layer):
    """Sliding-window pooling over `rank` spatial dims of (N, C, *spatial); no parameters."""

    shape_rule = MAX_SHAPE
    params_rule = "none"
    macs_rule = "0 (comparisons, not multiply-accumulates)"
    peer_rules = MAX_PEERS

    rank: ClassVar[int] = 2
    averages: ClassVar[bool] = False  # avg pools: thop charges one op per output element
    unpadded_fit: ClassVar[bool] = False  # the kernel must fit the input before padding (PyTorch's avgpool3d)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        # ptflops counts the input once in its module hook and once more in its F.*pool* patch
        return [row(POOL, thop=numel(y) if self.averages else None, ptflops=(numel(x), numel(x)))]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        from ..kernels import pool

        k, s, p, d = self.window_args()
        if self.averages:
            return pool.avgpool_forward(x, k, s, p, self.ceil_mode, self.count_include_pad)  # type: ignore[attr-defined]
        return pool.maxpool_forward(x, k, s, p, d, self.ceil_mode)  # type: ignore[attr-defined]

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        from ..kernels import pool

        back = pool.avgpool_backward if self.averages else pool.maxpool_backward
        return back(dy, cache), {}

    def window_args(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(kernel, stride, padding, dilation) per spatial dim; stride defaults to the kernel."""
        k = per_dim(self.kernel_size, self.rank)  # type: ignore[attr-defined]
        s = k if self.stride is None else per_dim(self.stride, self.rank)  # type: ignore[attr-defined]
        p = per_dim(self.padding, self.rank)  # type: ignore[attr-defined]
        d = per_dim(getattr(self, "dilation", 1), self.rank)
        return k, s, p, d

    def output_shape(self, x: Shape) -> Shape:
        self.expect_spatial(x, self.rank)
        k, s, p, d = self.window_args()
        for kk, pp in zip(k, p):
            if pp > kk // 2:  # PyTorch's own check, on the undilated kernel
                raise ShapeError(f"padding {pp} exceeds half the kernel_size {kk}", value=pp)
        if self.unpadded_fit and any(n < kk for n, kk in zip(x[2:], k)):
            raise ShapeError(f"kernel_size {fmt_shape(k)} exceeds the unpadded input {fmt_shape(x[2:])}", value=k)
        out = tuple(
            pool_out(n, kk, ss, pp, dd, self.ceil_mode)  # type: ignore[attr-defined]
            for n, kk, ss, pp, dd in zip(x[2:], k, s, p, d)
        )
        if any(n < 1 for n in out):
            padded = tuple(n + 2 * pp for n, pp in zip(x[2:], p))
            reach = tuple(dd * (kk - 1) + 1 for kk, dd in zip(k, d))
            raise ShapeError(f"kernel_size {fmt_shape(reach)} exceeds padded input {fmt_shape(padded)}", value=reach)
        return (*x[:2], *out)


def _pool_args(rank: int, avg: bool) -> tuple[Arg, ...]:
    args = [
        Arg("kernel_size", Ints(rank=rank)),
        Arg("stride", Opt(Ints(rank=rank)), None, "null = kernel_size"),
        Arg("padding", Ints(low=0, rank=rank), 0),
    ]
    if avg:
        args += [Arg("ceil_mode", Bool(), False), Arg("count_include_pad", Bool(), True)]
    else:
        args += [Arg("dilation", Ints(rank=rank), 1), Arg("ceil_mode", Bool(), False)]
    return tuple(args)


@register
class MaxPool1d(_Pool):
    type_name = "maxpool1d"
    selects = True
    summary = "max over sliding windows of (N, C, L)"
    rank = 1
    args = _pool_args(1, avg=False)
    example = ([2, 8], {"kernel_size": 2})


@register
class MaxPool2d(_Pool):
    type_name = "maxpool2d"
    selects = True
    summary = "max over sliding windows of (N, C, H, W)"
    rank = 2
    args = _pool_args(2, avg=False)
    example = ([2, 8, 8], {"kernel_size": 3, "stride": 2, "padding": 1})


@register
class AvgPool1d(_Pool):
    type_name = "avgpool1d"
    summary = "mean over sliding windows of (N, C, L)"
    rank = 1
    averages = True
    args = _pool_args(1, avg=True)
    example = ([2, 8], {"kernel_size": 2})
    shape_rule = AVG_SHAPE
    peer_rules = AVG_PEERS
    inert_args = ("count_include_pad",)


@register
class AvgPool2d(_Pool):
    type_name = "avgpool2d"
    summary = "mean over sliding windows of (N, C, H, W)"
    rank = 2
    averages = True
    args = _pool_args(2, avg=True)
    example = ([2, 8, 8], {"kernel_size": 2})
    shape_rule = AVG_SHAPE
    peer_rules = AVG_PEERS
    inert_args = ("count_include_pad",)


@register
class MaxPool3d(_Pool):
    type_name = "maxpool3d"
    selects = True
    summary = "max over sliding windows of (N, C, D, H, W)"
    rank = 3
    args = _pool_args(3, avg=False)
    example = ([2, 4, 4, 4], {"kernel_size": 2})


@register
class AvgPool3d(_Pool):
    type_name = "avgpool3d"
    summary = "mean over sliding windows of (N, C, D, H, W)"
    rank = 3
    averages = True
    unpadded_fit = True
    args = _pool_args(3, avg=True)
    example = ([2, 4, 4, 4], {"kernel_size": 2})
    shape_rule = AVG_SHAPE
    peer_rules = AVG_PEERS
    inert_args = ("count_include_pad",)


class _AdaptivePool(Layer):
    """Pooling to a fixed output size; window i spans [floor(i·L/out), ceil((i+1)·L/out))."""

    shape_rule = ADAPTIVE_SHAPE
    params_rule = "none"
    macs_rule = "0"
    peer_rules = ADAPTIVE_MAX_PEERS

    rank: ClassVar[int] = 2
    averages: ClassVar[bool] = False

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        thop = fvcore = None
        if self.averages:
            # thop: (prod of in/out size ratios + 1) per output element, in floating point
            ratio = 1.0
            for i, o in zip(x[2:], y[2:]):
                ratio *= i / o
            thop = int((ratio + 1) * numel(y))
            fvcore = numel(x) if self.rank == 2 else None  # fvcore handles only the 2-D op
        return [row(POOL, fvcore=fvcore, thop=thop, ptflops=(numel(x), numel(x)))]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        from ..kernels import pool

        size = per_dim(self.output_size, self.rank)  # type: ignore[attr-defined]
        out = tuple(n if o is None else o for n, o in zip(x.shape[2:], size))
        if self.averages:
            return pool.adaptive_avgpool_forward(x, out)
        y, cache = pool.adaptive_maxpool2d_forward(lift(x, self.rank), out if self.rank == 2 else (1, *out))
        return drop(y, self.rank), cache

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        from ..kernels import pool

        if self.averages:
            return pool.adaptive_avgpool_backward(dy, cache), {}
        return drop(pool.adaptive_maxpool2d_backward(lift(dy, self.rank), cache), self.rank), {}

    def output_shape(self, x: Shape) -> Shape:
        self.expect_spatial(x, self.rank)
        size = per_dim(self.output_size, self.rank)  # type: ignore[attr-defined]
        # null keeps that dimension's input size, as in PyTorch
        return (*x[:2], *(n if o is None else o for n, o in zip(x[2:], size)))


@register
class AdaptiveAvgPool1d(_AdaptivePool):
    type_name = "adaptiveavgpool1d"
    summary = "mean pooling of (N, C, L) to a fixed length"
    rank = 1
    averages = True
    args = (Arg("output_size", Ints(rank=1)),)
    example = ([2, 8], {"output_size": 1})
    peer_rules = ADAPTIVE_AVG_PEERS


@register
class AdaptiveAvgPool2d(_AdaptivePool):
    type_name = "adaptiveavgpool2d"
    summary = "mean pooling of (N, C, H, W) to a fixed size"
    rank = 2
    averages = True
    args = (Arg("output_size", Ints(rank=2, nullable=True)),)
    example = ([2, 7, 7], {"output_size": 1})
    peer_rules = ADAPTIVE_AVG2D_PEERS


@register
class AdaptiveAvgPool3d(_AdaptivePool):
    type_name = "adaptiveavgpool3d"
    summary = "mean pooling of (N, C, D, H, W) to a fixed size"
    rank = 3
    averages = True
    args = (Arg("output_size", Ints(rank=3, nullable=True)),)
    example = ([2, 4, 4, 4], {"output_size": 1})
    peer_rules = ADAPTIVE_AVG_PEERS


@register
class AdaptiveMaxPool1d(_AdaptivePool):
    type_name = "adaptivemaxpool1d"
    selects = True
    summary = "max pooling of (N, C, L) to a fixed length"
    rank = 1
    args = (Arg("output_size", Ints(rank=1)),)
    example = ([2, 8], {"output_size": 2})


@register
class AdaptiveMaxPool2d(_AdaptivePool):
    type_name = "adaptivemaxpool2d"
    selects = True
    summary = "max pooling of (N, C, H, W) to a fixed size"
    rank = 2
    args = (Arg("output_size", Ints(rank=2, nullable=True)),)
    example = ([2, 7, 7], {"output_size": 2})
