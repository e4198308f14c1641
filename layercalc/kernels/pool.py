"""NumPy pooling kernels over any number of spatial dims (N, C, *S), float64 or float32: max and
average pooling, and adaptive pooling.

Semantics are PyTorch's:
- max pooling pads with −inf, and each window's gradient goes to ONE element: the first maximum
  in row-major window order (PyTorch scans with a strict `>`); a NaN propagates, and with several
  NaNs in a window the last one gets the gradient, as there (adaptive max pooling with windows of
  unequal sizes: the first one);
- average pooling divides by the window clipped to the padded input (count_include_pad) or to
  the real input; with ceil_mode a last window is kept when it starts inside the input or its
  left padding, and the part of it hanging past the right padding never counts;
- adaptive pooling uses the windows [floor(i·L/out), ceil((i+1)·L/out)).
Work is done one kernel tap at a time (∏k whole-array operations on output-sized arrays),
never one window or pixel at a time in Python; max pooling's backward is one scatter of ∇y
to the winners (a plain assignment when windows are disjoint, one bincount when they overlap). The spatial rank comes from the arrays, so 1-D, 2-D and 3-D pools are one code path
(adaptive max pooling, 1-D and 2-D only, runs 1-D inputs with a height of 1). Output sizes come
from the calculator's own integer formulas (layers/geometry.py); PyTorch checks both in the tests.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ..layers.geometry import pool_out
from .conv import col2im_into, pad

Array = NDArray[Any]
Cache = tuple[Any, ...]
Pair = tuple[int, int]  # (h, w)
Sizes = tuple[int, ...]  # one int per spatial dim

__all__ = [
    "maxpool_forward",
    "maxpool_backward",
    "avgpool_forward",
    "avgpool_backward",
    "adaptive_avgpool_forward",
    "adaptive_avgpool_backward",
    "adaptive_maxpool2d_forward",
    "adaptive_maxpool2d_backward",
]


def _window_count(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """How many windows of span d(k−1)+1 and step s fit in size + 2p (ceil_mode: a partial last one too)."""
    if size + 2 * p - d * (k - 1) - 1 < 0:
        raise ValueError(f"pooling window {d * (k - 1) + 1} exceeds the padded input {size + 2 * p}")
    return pool_out(size, k, s, p, d, ceil_mode)


def _taps(kernel: Sizes, stride: Sizes, dilation: Sizes, outs: Sizes) -> list[tuple[int, tuple[slice, ...]]]:
    """(tap number, index into a padded input) for every tap in row-major order: the tap's value in every window."""
    taps = []
    for t, offsets in enumerate(itertools.product(*(range(k) for k in kernel))):
        index = tuple(slice(i * d, i * d + (o - 1) * s + 1, s) for i, d, o, s in zip(offsets, dilation, outs, stride))
        taps.append((t, (slice(None), slice(None), *index)))
    return taps


def _pad_for_windows(x: Array, kernel: Sizes, stride: Sizes, padding: Sizes, dilation: Sizes, ceil_mode: bool, value: float) -> tuple[Array, Sizes]:
    """(x padded by `padding` plus, with ceil_mode, the overhang of the last window; the output sizes)."""
    geometry = list(zip(x.shape[2:], kernel, stride, padding, dilation))
    outs = tuple(_window_count(n, k, s, p, d, ceil_mode) for n, k, s, p, d in geometry)
    # ceil_mode's last window may reach past the right padding: pad that overhang too (it never wins or counts)
    pads = tuple((p, p + max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))) for o, (n, k, s, p, d) in zip(outs, geometry))
    return pad(x, pads, value), outs


# ---------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------


def maxpool_forward(x: Array, kernel: Sizes, stride: Sizes, padding: Sizes, dilation: Sizes, ceil_mode: bool) -> tuple[Array, Cache]:
    """y (N, C, *out) = the max of each window of x (N, C, *S); the cache keeps each window's winner."""
    kernel, stride, padding, dilation = tuple(kernel), tuple(stride), tuple(padding), tuple(dilation)
    xp, outs = _pad_for_windows(x, kernel, stride, padding, dilation, ceil_mode, -np.inf)
    taps = _taps(kernel, stride, dilation, outs)
    best = xp[taps[0][1]].copy()
    # the winner: PyTorch scans with a strict '>', so the FIRST maximum in row-major window
    # order. The tap number is carried along without a masked copy: arg += (t − arg)·mask sets
    # it to t where a later tap is strictly greater (unsigned arithmetic wraps back exactly)
    arg = np.zeros(best.shape, dtype=np.min_scalar_type(len(taps)))
    greater = np.empty(best.shape, dtype=bool)
    step = np.empty_like(arg)
    for t, index in taps[1:]:
        value = xp[index]
        np.greater(value, best, out=greater)
        np.maximum(best, value, out=best)  # a NaN propagates, as in PyTorch
        np.subtract(t, arg, out=step)
        np.multiply(step, greater, out=step)
        arg += step
    if np.isnan(best).any():  # PyTorch also replaces on every NaN: the LAST NaN wins
        for t, index in taps:
            np.copyto(arg, t, where=np.isnan(xp[index]))
    flat = _winners(arg, xp.shape, kernel, stride, dilation)
    return best, (flat, xp.shape, padding, x.shape, _disjoint(kernel, stride, dilation))


def _disjoint(kernel: Sizes, stride: Sizes, dilation: Sizes) -> bool:
    """True when no two windows share an input (stride >= span in every axis): each input wins at most once."""
    return all(s >= d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation))


def _winners(arg: Array, xp_shape: tuple[int, ...], kernel: Sizes, stride: Sizes, dilation: Sizes) -> Array:
    """(N, C, *out) flat index into the padded input xp (N, C, *P) of each window's winning tap (arg, row-major)."""
    n, c, *sizes = xp_shape
    outs = arg.shape[2:]
    r = len(sizes)
    steps = [math.prod(sizes[a + 1 :]) for a in range(r)]  # element strides of the padded volume
    # a tap's offset from its window's first element, and each window's first element
    offsets = functools.reduce(np.add.outer, [np.arange(k) * d * st for k, d, st in zip(kernel, dilation, steps)]).ravel()
    starts = functools.reduce(np.add.outer, [np.arange(o) * s * st for o, s, st in zip(outs, stride, steps)])
    planes = (np.arange(n * c) * math.prod(sizes)).reshape(n, c, *([1] * r))
    flat = offsets.take(arg)  # intp, one gather
    flat += starts
    flat += planes
    return flat


def _scatter_winners(dy: Array, flat: Array, xp_shape: tuple[int, ...], lo: Sizes, x_shape: tuple[int, ...], disjoint: bool) -> Array:
    """∇x (N, C, *S): each ∇y entry added to its window's winner (flat index into the padded xp_shape), the padding cut off."""
    volume = math.prod(xp_shape)
    if disjoint:  # every input wins at most once: a plain scatter, in ∇y's dtype
        dxp = np.zeros(volume, dtype=dy.dtype)
        dxp[flat.ravel()] = dy.ravel()
    else:  # one bincount sums where windows overlap and share a winner
        dxp = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=volume)
    crop = tuple(slice(p, p + n) for p, n in zip(lo, x_shape[2:]))
    return np.ascontiguousarray(dxp.reshape(xp_shape)[(slice(None), slice(None), *crop)], dtype=dy.dtype)


def maxpool_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, *S) from ∇y (N, C, *out): each window's gradient to its winner (summed where windows overlap)."""
    return _scatter_winners(dy, *cache)


# ---------------------------------------------------------------------------------------------
# average pooling
# ---------------------------------------------------------------------------------------------


def _divisors(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> Array:
    """(out,) counts of each window along one axis, PyTorch's rule: clipped to the padding, then (without count_include_pad) to the input."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)  # a ceil_mode window's overhang past the padding never counts
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


def avgpool_forward(x: Array, kernel: Sizes, stride: Sizes, padding: Sizes, ceil_mode: bool, count_include_pad: bool) -> tuple[Array, Cache]:
    """y (N, C, *out) = each window's sum of x (N, C, *S) over its divisor."""
    kernel, stride, padding = tuple(kernel), tuple(stride), tuple(padding)
    ones = (1,) * len(kernel)
    xp, outs = _pad_for_windows(x, kernel, stride, padding, ones, ceil_mode, 0.0)
    taps = _taps(kernel, stride, ones, outs)
    total = xp[taps[0][1]].copy()
    for _, index in taps[1:]:
        total += xp[index]
    # the divisor of a window is the product of its per-axis counts
    per_axis = [_divisors(*a, count_include_pad) for a in zip(x.shape[2:], outs, kernel, stride, padding)]
    div = functools.reduce(np.multiply.outer, per_axis).astype(x.dtype)
    total /= div
    return total, (div, x.shape, kernel, stride, padding)


def avgpool_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, *S) from ∇y (N, C, *out): each output's gradient shared evenly over its window (padding dropped)."""
    div, x_shape, kernel, stride, padding = cache
    share = dy / div
    n, c, *outs = share.shape
    # every tap gets the same share: a broadcast view, no per-tap copy
    parts = np.broadcast_to(share[(slice(None), slice(None), *([None] * len(kernel)))], (n, c, *kernel, *outs))
    return col2im_into(np.zeros(x_shape, dtype=parts.dtype), parts, stride, padding, (1,) * len(kernel))


# the 2-D names older callers use: the same functions
maxpool2d_forward, maxpool2d_backward = maxpool_forward, maxpool_backward
avgpool2d_forward, avgpool2d_backward = avgpool_forward, avgpool_backward


# ---------------------------------------------------------------------------------------------
# adaptive pooling
# ---------------------------------------------------------------------------------------------


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows along one axis: [floor(i·L/out), ceil((i+1)·L/out)) for i < out."""
    if size < 1 or out < 1:
        raise ValueError(f"adaptive pooling of size {size} to {out}")
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _averaging(size: int, out: int, dtype: DTypeLike) -> Array:
    """The (out, size) matrix that averages each adaptive window along one axis."""
    m = np.zeros((out, size), dtype=dtype)
    for i, (a, b) in enumerate(_adaptive_bounds(size, out)):
        m[i, a:b] = 1.0 / (b - a)
    return m


def _along(x: Array, m: Array, axis: int) -> Array:
    """m (out, n) applied along one axis of x (size n there): the axis becomes size out."""
    return np.moveaxis(np.matmul(m, np.moveaxis(x, axis, -2)), -2, axis)


def adaptive_avgpool_forward(x: Array, outs: Sizes) -> tuple[Array, Cache]:
    """y (N, C, *outs): the mean of each adaptive window of x (N, C, *S); the windows are separable, so one small product per axis."""
    ms = [_averaging(n, o, x.dtype) for n, o in zip(x.shape[2:], outs)]
    y = x
    for a, m in enumerate(ms):
        y = _along(y, m, 2 + a)
    return y, (ms,)


def adaptive_avgpool_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, *S) = the transposed averaging applied to ∇y (N, C, *outs), axis by axis."""
    (ms,) = cache
    dx = dy
    for a, m in enumerate(ms):
        dx = _along(dx, m.T, 2 + a)
    return dx


adaptive_avgpool2d_forward, adaptive_avgpool2d_backward = adaptive_avgpool_forward, adaptive_avgpool_backward


def adaptive_maxpool2d_forward(x: Array, out_hw: Pair) -> tuple[Array, Cache]:
    """y (N, C, oh, ow): the max of each adaptive window of x (N, C, H, W); the cache keeps each winner's flat index.

    When the sizes divide, the windows are a plain max pool (kernel = stride = H/oh). Otherwise
    two separable passes, which keep PyTorch's row-major "first max": for each output column the
    first max of every input row in its column window, then for each output row the first max of
    those over its row window (the earliest row holding the max, at its first column).
    """
    n, c, h, w = x.shape
    oh, ow = out_hw
    _adaptive_bounds(h, oh), _adaptive_bounds(w, ow)  # validates the sizes
    if h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        return maxpool2d_forward(x, k, k, (0, 0), (1, 1), False)
    row_max = np.empty((n, c, h, ow), dtype=x.dtype)
    row_arg = np.empty((n, c, h, ow), dtype=np.intp)  # the input column of each row's max
    for j, (a, b) in enumerate(_adaptive_bounds(w, ow)):
        arg = np.argmax(x[:, :, :, a:b], axis=3)
        row_arg[:, :, :, j] = a + arg
        row_max[:, :, :, j] = np.take_along_axis(x[:, :, :, a:b], arg[..., None], axis=3)[..., 0]
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    flat = np.empty((n, c, oh, ow), dtype=np.intp)  # the winner's index in the (H·W) plane
    for i, (a, b) in enumerate(_adaptive_bounds(h, oh)):
        arg = np.argmax(row_max[:, :, a:b], axis=2)[:, :, None]
        y[:, :, i] = np.take_along_axis(row_max[:, :, a:b], arg, axis=2)[:, :, 0]
        flat[:, :, i] = (a + arg[:, :, 0]) * w + np.take_along_axis(row_arg[:, :, a:b], arg, axis=2)[:, :, 0]
    flat += (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1)  # into the whole (N, C, H, W) volume
    return y, (flat, x.shape, (0, 0), x.shape, False)


def adaptive_maxpool2d_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, H, W) from ∇y (N, C, oh, ow): each window's gradient to its winner (summed where windows overlap)."""
    return _scatter_winners(dy, *cache)
