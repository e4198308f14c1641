"""NumPy pooling kernels (NCHW, float64 or float32): max and average pooling, and adaptive pooling.

Semantics are PyTorch's:
- max pooling pads with −inf, and each window's gradient goes to ONE element: the first maximum
  in row-major window order (PyTorch scans with a strict `>`); a NaN propagates, and with several
  NaNs in a window the last one gets the gradient, as there (adaptive max pooling with windows of
  unequal sizes: the first one);
- average pooling divides by the window clipped to the padded input (count_include_pad) or to
  the real input; with ceil_mode a last window is kept when it starts inside the input or its
  left padding, and the part of it hanging past the right padding never counts;
- adaptive pooling uses the windows [floor(i·L/out), ceil((i+1)·L/out)).
Work is done one kernel tap at a time (kh·kw whole-array operations on output-sized arrays),
never one window or pixel at a time in Python; max pooling's backward is one bincount over the
winners. 1-D pools use these kernels with a height of 1.
Output sizes come from the array arithmetic here, not from the calculator's formulas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .conv import col2im_into, pad2d

Array = NDArray[Any]
Cache = tuple[Any, ...]
Pair = tuple[int, int]  # (h, w)

__all__ = [
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "adaptive_avgpool2d_forward",
    "adaptive_avgpool2d_backward",
    "adaptive_maxpool2d_forward",
    "adaptive_maxpool2d_backward",
]


def _window_count(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """How many windows of span d(k−1)+1 and step s fit in size + 2p (ceil_mode: a partial last one too)."""
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise ValueError(f"pooling window {d * (k - 1) + 1} exceeds the padded input {size + 2 * p}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _taps(kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> list[tuple[int, slice, slice]]:
    """(tap number, row slice, column slice) of a padded input for every tap in row-major order: the tap's value in every window."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    return [
        (i * kw + j, slice(i * dh, i * dh + (ho - 1) * sh + 1, sh), slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def _pad_for_windows(x: Array, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool, value: float) -> tuple[Array, Pair]:
    """(x padded by `padding` plus, with ceil_mode, the overhang of the last window; (Ho, Wo))."""
    outs = tuple(_window_count(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation))
    # ceil_mode's last window may reach past the right padding: pad that overhang too (it never wins or counts)
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, n, k, s, p, d in zip(outs, x.shape[2:], kernel, stride, padding, dilation)]
    pads = ((padding[0], padding[0] + extra[0]), (padding[1], padding[1] + extra[1]))
    return pad2d(x, pads, value), outs  # type: ignore[return-value]


def _scatter(dy_parts: Array, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
    """∇x (N, C, H, W) from per-tap gradients (N, C, kh, kw, Ho, Wo) or a broadcastable view; padding cells dropped."""
    dx = np.zeros(x_shape, dtype=dy_parts.dtype)
    return col2im_into(dx, dy_parts, stride, padding, dilation)


# ---------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------


def maxpool2d_forward(x: Array, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool) -> tuple[Array, Cache]:
    """y (N, C, Ho, Wo) = the max of each window of x (N, C, H, W); the cache keeps each window's winner."""
    kernel, stride, padding, dilation = tuple(kernel), tuple(stride), tuple(padding), tuple(dilation)
    xp, out_hw = _pad_for_windows(x, kernel, stride, padding, dilation, ceil_mode, -np.inf)  # type: ignore[arg-type]
    taps = _taps(kernel, stride, dilation, out_hw)  # type: ignore[arg-type]
    _, rows, cols = taps[0]
    best = xp[:, :, rows, cols].copy()
    for _, rows, cols in taps[1:]:
        np.maximum(best, xp[:, :, rows, cols], out=best)  # a NaN propagates, as in PyTorch
    # the winner: PyTorch scans with a strict '>', so the FIRST maximum in row-major window
    # order; taps visited last to first, each overwriting, leave the first equal one
    arg = np.zeros(best.shape, dtype=np.min_scalar_type(len(taps)))
    equal = np.empty(best.shape, dtype=bool)
    for t, rows, cols in taps[::-1]:
        np.equal(xp[:, :, rows, cols], best, out=equal)
        np.copyto(arg, t, where=equal)
    if np.isnan(best).any():  # PyTorch also replaces on every NaN: the LAST NaN wins
        for t, rows, cols in taps:
            np.copyto(arg, t, where=np.isnan(xp[:, :, rows, cols]))
    return best, (_winners(arg, x.shape, kernel, stride, padding, dilation), x.shape)


def _winners(arg: Array, x_shape: tuple[int, ...], kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
    """(N, C, Ho, Wo) index of each window's winning tap in x's (H·W) plane; −1 where it is a padding cell."""
    _, _, h, w = x_shape
    _, _, ho, wo = arg.shape
    i, j = np.divmod(arg.astype(np.intp), kernel[1])
    rows = np.arange(ho)[:, None] * stride[0] - padding[0] + i * dilation[0]
    cols = np.arange(wo)[None, :] * stride[1] - padding[1] + j * dilation[1]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    return np.where(inside, rows * w + cols, -1)


def _scatter_winners(dy: Array, flat: Array, x_shape: tuple[int, ...]) -> Array:
    """∇x (N, C, H, W): each ∇y entry added to its window's winner (flat index in the plane, −1 = dropped)."""
    n, c, h, w = x_shape
    # one bincount over (plane, winner) pairs sums where windows overlap and share a winner;
    # winners in the padding go to a spare slot past the end, then are cut off
    plane = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)
    index = np.where(flat >= 0, plane + flat, n * c * h * w)
    dx = np.bincount(index.ravel(), weights=dy.ravel(), minlength=n * c * h * w + 1)[:-1]
    return dx.reshape(x_shape).astype(dy.dtype, copy=False)


def maxpool2d_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, H, W) from ∇y (N, C, Ho, Wo): each window's gradient to its winner (summed where windows overlap)."""
    flat, x_shape = cache
    return _scatter_winners(dy, flat, x_shape)


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


def avgpool2d_forward(x: Array, kernel: Pair, stride: Pair, padding: Pair, ceil_mode: bool, count_include_pad: bool) -> tuple[Array, Cache]:
    """y (N, C, Ho, Wo) = each window's sum of x (N, C, H, W) over its divisor."""
    kernel, stride, padding = tuple(kernel), tuple(stride), tuple(padding)
    xp, (ho, wo) = _pad_for_windows(x, kernel, stride, padding, (1, 1), ceil_mode, 0.0)  # type: ignore[arg-type]
    taps = _taps(kernel, stride, (1, 1), (ho, wo))  # type: ignore[arg-type]
    _, rows, cols = taps[0]
    total = xp[:, :, rows, cols].copy()
    for _, rows, cols in taps[1:]:
        total += xp[:, :, rows, cols]
    h, w = x.shape[2:]
    div = np.outer(
        _divisors(h, ho, kernel[0], stride[0], padding[0], count_include_pad),
        _divisors(w, wo, kernel[1], stride[1], padding[1], count_include_pad),
    ).astype(x.dtype)
    total /= div
    return total, (div, x.shape, kernel, stride, padding)


def avgpool2d_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, H, W) from ∇y (N, C, Ho, Wo): each output's gradient shared evenly over its window (padding dropped)."""
    div, x_shape, kernel, stride, padding = cache
    share = dy / div
    n, c, ho, wo = share.shape
    # every tap gets the same share: a broadcast view, no (kh, kw) copy
    parts = np.broadcast_to(share[:, :, None, None], (n, c, *kernel, ho, wo))
    return _scatter(parts, x_shape, kernel, stride, padding, (1, 1))


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


def adaptive_avgpool2d_forward(x: Array, out_hw: Pair) -> tuple[Array, Cache]:
    """y (N, C, oh, ow): the mean of each adaptive window of x (N, C, H, W); the windows are separable, so two small products."""
    mh = _averaging(x.shape[2], out_hw[0], x.dtype)
    mw = _averaging(x.shape[3], out_hw[1], x.dtype)
    return mh @ x @ mw.T, (mh, mw)


def adaptive_avgpool2d_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, H, W) = the transposed averaging applied to ∇y (N, C, oh, ow)."""
    mh, mw = cache
    return mh.T @ dy @ mw


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
        y, (flat, _) = maxpool2d_forward(x, k, k, (0, 0), (1, 1), False)
        return y, (flat, x.shape)
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
    return y, (flat, x.shape)


def adaptive_maxpool2d_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, H, W) from ∇y (N, C, oh, ow): each window's gradient to its winner (summed where windows overlap)."""
    flat, x_shape = cache
    return _scatter_winners(dy, flat, x_shape)
