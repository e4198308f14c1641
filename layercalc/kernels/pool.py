"""NumPy pooling kernels (NCHW): max and average over sliding windows, and adaptive pooling.

Semantics are PyTorch's: max pooling pads with -inf and sends each window's gradient to one
element, the first maximum in row-major window order; average pooling divides by the window
clipped to the padded input (count_include_pad) or to the real input; with ceil_mode a last
window that starts inside the input or its left padding is kept, and the part of it that hangs
past the padding never counts. 1-D pools use these kernels with a height of 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .conv import _windows

Pair = tuple[int, int]


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside
        out -= 1
    return out


def _padded(x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool, value: float) -> tuple[Any, Pair]:
    """x padded by `padding` plus, with ceil_mode, enough on the right for the last window."""
    outs = tuple(
        _out_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation)
    )
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, n, k, s, p, d in zip(outs, x.shape[2:], kernel, stride, padding, dilation)]
    pads = ((0, 0), (0, 0), (padding[0], padding[0] + extra[0]), (padding[1], padding[1] + extra[1]))
    return np.pad(x, pads, constant_values=value), outs  # type: ignore[return-value]


def maxpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool) -> tuple[Any, Any]:
    """y (N, C, Ho, Wo): the max of each window; the cache remembers which element won."""
    xp, _ = _padded(x, kernel, stride, padding, dilation, ceil_mode, -np.inf)
    view, ho, wo = _windows(xp, kernel, stride, dilation)
    n, c = x.shape[:2]
    flat = view.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, ho, wo, -1)
    arg = flat.argmax(axis=-1)  # the first maximum, as PyTorch
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return y, (arg, x.shape, xp.shape, kernel, stride, padding, dilation)


def maxpool2d_backward(dy: Any, cache: Any) -> Any:
    """∇x: each window's gradient to its winning element (sums where windows overlap)."""
    arg, x_shape, padded, kernel, stride, padding, dilation = cache
    n, c, ho, wo = dy.shape
    hp, wp = padded[2:]
    i, j = np.divmod(arg, kernel[1])
    rows = np.arange(ho)[:, None] * stride[0] + i * dilation[0]
    cols = np.arange(wo)[None, :] * stride[1] + j * dilation[1]
    plane = (np.arange(n)[:, None, None, None] * c + np.arange(c)[None, :, None, None]) * (hp * wp)
    flat = (plane + rows * wp + cols).ravel()
    dxp = np.bincount(flat, weights=dy.ravel(), minlength=n * c * hp * wp).reshape(n, c, hp, wp)
    return dxp[:, :, padding[0] : padding[0] + x_shape[2], padding[1] : padding[1] + x_shape[3]].astype(dy.dtype)


def _divisors(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> Any:
    """Per output position: how many elements of its window count (PyTorch's rule)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)  # never past the padding (ceil_mode overhang)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return (end - start).astype(float)


def avgpool2d_forward(x: Any, kernel: Pair, stride: Pair, padding: Pair, ceil_mode: bool, count_include_pad: bool) -> tuple[Any, Any]:
    """y (N, C, Ho, Wo): each window's sum over its divisor."""
    xp, (ho, wo) = _padded(x, kernel, stride, padding, (1, 1), ceil_mode, 0.0)
    view, _, _ = _windows(xp, kernel, stride, (1, 1))
    div = np.outer(
        _divisors(x.shape[2], ho, kernel[0], stride[0], padding[0], count_include_pad),
        _divisors(x.shape[3], wo, kernel[1], stride[1], padding[1], count_include_pad),
    ).astype(x.dtype)
    y = view.sum(axis=(2, 3)) / div
    return y, (div, x.shape, xp.shape, kernel, stride, padding)


def avgpool2d_backward(dy: Any, cache: Any) -> Any:
    """∇x: each output's gradient spread evenly over its window (padding cells dropped)."""
    div, x_shape, padded, kernel, stride, padding = cache
    share = dy / div
    ho, wo = dy.shape[2:]
    dxp = np.zeros(padded, dtype=dy.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            dxp[:, :, i : i + stride[0] * (ho - 1) + 1 : stride[0], j : j + stride[1] * (wo - 1) + 1 : stride[1]] += share
    return dxp[:, :, padding[0] : padding[0] + x_shape[2], padding[1] : padding[1] + x_shape[3]]


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: [floor(i·L/out), ceil((i+1)·L/out))."""
    return [((i * size) // out, math.ceil((i + 1) * size / out)) for i in range(out)]


def _averaging(size: int, out: int, dtype: Any) -> Any:
    """The (out, size) matrix that averages each adaptive window."""
    m = np.zeros((out, size), dtype=dtype)
    for i, (a, b) in enumerate(_adaptive_bounds(size, out)):
        m[i, a:b] = 1.0 / (b - a)
    return m


def adaptive_avgpool2d_forward(x: Any, out_hw: Pair) -> tuple[Any, Any]:
    """y (N, C, oh, ow): window means, as two small matrix products (the windows are separable)."""
    mh = _averaging(x.shape[2], out_hw[0], x.dtype)
    mw = _averaging(x.shape[3], out_hw[1], x.dtype)
    return np.einsum("ih,nchw,jw->ncij", mh, x, mw, optimize=True), (mh, mw)


def adaptive_avgpool2d_backward(dy: Any, cache: Any) -> Any:
    """∇x = the transposed averaging applied to ∇y."""
    mh, mw = cache
    return np.einsum("ih,ncij,jw->nchw", mh, dy, mw, optimize=True)


def adaptive_maxpool2d_forward(x: Any, out_hw: Pair) -> tuple[Any, Any]:
    """y (N, C, oh, ow): the max of each adaptive window; the cache keeps the winners."""
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    winners = []
    for i, (h0, h1) in enumerate(_adaptive_bounds(x.shape[2], out_hw[0])):
        for j, (w0, w1) in enumerate(_adaptive_bounds(x.shape[3], out_hw[1])):
            window = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            arg = window.argmax(axis=-1)
            y[:, :, i, j] = np.take_along_axis(window, arg[..., None], axis=-1)[..., 0]
            r, q = np.divmod(arg, w1 - w0)
            winners.append((i, j, h0 + r, w0 + q))
    return y, (winners, x.shape)


def adaptive_maxpool2d_backward(dy: Any, cache: Any) -> Any:
    """∇x: each window's gradient to its winner."""
    winners, x_shape = cache
    n, c = x_shape[:2]
    dx = np.zeros(x_shape, dtype=dy.dtype)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for i, j, rows, cols in winners:
        np.add.at(dx, (nn, cc, rows, cols), dy[:, :, i, j])
    return dx
