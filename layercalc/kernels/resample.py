"""NumPy resampling kernels over any number of spatial dims (N, C, *S): interpolation (nearest,
linear, cubic; torch's `F.interpolate` semantics) and pixel shuffle.

Interpolation is separable: along each spatial axis every output position reads a few input
positions (1 for nearest, 2 for linear, 4 for cubic) with weights, so the forward is one gather
per axis and tap, and the backward, its exact adjoint, one bincount per axis (a scatter-add).
Bilinear and trilinear are linear along 2 and 3 axes; bicubic is cubic along 2.

Index arithmetic is PyTorch's (ATen's UpSample.h and its CPU kernels), in the array's own
precision (float64 for float64 input):
- the source scale is (L_in − 1)/(L_out − 1) with align_corners (0 for one output), else
  1/scale_factor when a scale factor was given, else L_in/L_out;
- linear: src = scale·(i + ½) − ½ clamped at 0 (align_corners: scale·i), the lower index
  floor(src) capped at L_in − 1, the upper one the next index unless at the end;
- cubic: the same source without the clamp, four taps floor(src) − 1 .. + 2 clamped into the
  input, Keys' kernel with A = −0.75;
- nearest (not nearest-exact): floor(scale·i) capped at L_in − 1, floor taken in single
  precision (ATen's floorf of the double). PyTorch's 2-D nearest kernel (and every nearest
  backward) computes it differently: an unchanged size copies, a doubled size halves the
  index, else scale and product are single precision. The two disagree on rare sizes (2 -> 82,
  or a scale factor whose output size equals the input's), so 1-D and 3-D forwards use the
  first rule and 2-D the second, as PyTorch's (2.13, CPU) forwards do. The backward here is
  always the exact adjoint of the forward; PyTorch's 1-D/3-D nearest backward is not, on those
  rare sizes; nor is its bicubic backward when a scale factor leaves both sizes unchanged (its
forward interpolates at 1/scale_factor, its backward copies).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]
Cache = tuple[Any, ...]
Taps = tuple[Array, Array]  # (indices (T, out), weights (T, out)) along one axis

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic kernel parameter

__all__ = ["axis_taps", "interpolate_forward", "interpolate_backward", "pixel_shuffle_forward", "pixel_shuffle_backward"]


def _floorf(v: Array) -> Array:
    """floor of v rounded to single precision first, as ATen's floorf(double) does; int64."""
    return np.floor(v.astype(np.float32)).astype(np.int64)


def _cubic(t: Array) -> Array:
    """(4, out) weights of Keys' cubic convolution for fractional offsets t (out,) in [0, 1]."""
    a = CUBIC_A

    def near(u: Array) -> Array:  # |u| <= 1
        return ((a + 2) * u - (a + 3)) * u * u + 1

    def far(u: Array) -> Array:  # 1 < |u| < 2
        return ((a * u - 5 * a) * u + 8 * a) * u - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])


def _nearest_2d(n_in: int, n_out: int, scale_factor: float | None) -> Array:
    """ATen's nearest_idx (its 2-D kernel and every backward): single precision, two shortcuts."""
    if n_out == n_in:
        return np.arange(n_out)
    if n_out == 2 * n_in:
        return np.arange(n_out) >> 1
    f32 = np.float32
    scale = f32(1.0 / scale_factor) if scale_factor is not None and scale_factor > 0 else f32(n_in) / f32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=f32) * scale).astype(np.int64), n_in - 1)


def axis_taps(kind: str, n_in: int, n_out: int, align_corners: bool, scale_factor: float | None, dtype: Any = np.float64, rank: int = 1) -> Taps:
    """Input indices and weights, each (T, n_out), along one axis of an input with `rank` spatial
    axes; kind is 'nearest', 'linear' or 'cubic'."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"interpolation from size {n_in} to {n_out}")
    ft = np.dtype(dtype).type
    i = np.arange(n_out, dtype=dtype)
    if n_out == n_in and kind == "linear":
        # PyTorch's linear kernels copy an axis whose size does not change, whatever the scale factor says
        return np.arange(n_out)[None], np.ones((1, n_out), dtype=dtype)
    if kind != "nearest" and align_corners:
        scale = ft((n_in - 1) / (n_out - 1)) if n_out > 1 else ft(0)
    elif scale_factor is not None and scale_factor > 0:
        scale = ft(1.0 / scale_factor)
    else:
        scale = ft(n_in) / ft(n_out)
    if kind == "nearest":
        index = _nearest_2d(n_in, n_out, scale_factor) if rank == 2 else np.minimum(_floorf(scale * i), n_in - 1)
        return index[None], np.ones((1, n_out), dtype=dtype)
    src = scale * i if align_corners else scale * (i + ft(0.5)) - ft(0.5)
    if kind == "linear":
        src = np.maximum(src, 0) if not align_corners else src
        lo = np.minimum(_floorf(src), n_in - 1)
        lam = np.clip(src - lo, 0, 1).astype(dtype)
        hi = lo + (lo < n_in - 1)
        return np.stack([lo, hi]), np.stack([1 - lam, lam])
    if kind == "cubic":
        base = np.minimum(_floorf(src), n_in - 1)
        t = np.clip(src - base, 0, 1).astype(dtype)
        index = np.clip(base[None] + np.arange(-1, 3)[:, None], 0, n_in - 1)
        return index, _cubic(t).astype(dtype)
    raise ValueError(f"unknown interpolation {kind!r}")


def _gather(x: Array, taps: Taps, axis: int) -> Array:
    """Σ_t w[t] · x[..., idx[t], ...] along `axis`: that axis becomes size out."""
    index, weight = taps
    xm = np.moveaxis(x, axis, -1)
    if len(index) == 1 and np.all(weight == 1):  # nearest: a plain gather
        y = xm[..., index[0]]
    else:
        y = xm[..., index[0]] * weight[0]
        for t in range(1, len(index)):
            y += xm[..., index[t]] * weight[t]
    return np.moveaxis(y, -1, axis)


def _scatter(dy: Array, taps: Taps, axis: int, n_in: int) -> Array:
    """The adjoint of _gather: ∇y's entries added, weighted, to the input positions they read (one bincount)."""
    index, weight = taps
    dym = np.moveaxis(dy, axis, -1)
    lead = dym.shape[:-1]
    rows = math.prod(lead)
    flat = dym.reshape(rows, 1, -1)
    slots = (np.arange(rows)[:, None, None] * n_in + index[None]).ravel()
    dx = np.bincount(slots, weights=(flat * weight[None]).ravel(), minlength=rows * n_in)
    return np.moveaxis(dx.reshape(*lead, n_in).astype(dy.dtype, copy=False), -1, axis)


def interpolate_forward(x: Array, outs: tuple[int, ...], kind: str, align_corners: bool, scale_factors: tuple[float | None, ...]) -> tuple[Array, Cache]:
    """y (N, C, *outs) from x (N, C, *S), interpolating along every spatial axis in turn."""
    rank = x.ndim - 2
    taps = [axis_taps(kind, n, o, align_corners, s, x.dtype, rank) for n, o, s in zip(x.shape[2:], outs, scale_factors)]
    y = x
    for a, tap in enumerate(taps):
        y = _gather(y, tap, 2 + a)
    return np.ascontiguousarray(y), (taps, x.shape)


def interpolate_backward(dy: Array, cache: Cache) -> Array:
    """∇x (N, C, *S) from ∇y (N, C, *outs): the forward's adjoint, axis by axis in reverse."""
    taps, x_shape = cache
    dx = dy
    for a in reversed(range(len(taps))):
        dx = _scatter(dx, taps[a], 2 + a, x_shape[2 + a])
    return dx


def pixel_shuffle_forward(x: Array, r: int) -> Array:
    """(N, C·r², H, W) -> (N, C, H·r, W·r): channel c·r² + i·r + j goes to row h·r + i, column w·r + j."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)).reshape(n, c // (r * r), h * r, w * r)


def pixel_shuffle_backward(dy: Array, r: int) -> Array:
    """(N, C, H·r, W·r) -> (N, C·r², H, W): the inverse permutation (a shuffle moves values, so its adjoint is its inverse)."""
    n, c, hr, wr = dy.shape
    h, w = hr // r, wr // r
    return np.ascontiguousarray(dy.reshape(n, c, h, r, w, r).transpose(0, 1, 3, 5, 2, 4)).reshape(n, c * r * r, h, w)
