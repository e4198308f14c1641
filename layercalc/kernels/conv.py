"""NumPy convolution kernels (NCHW, float64 or float32): im2col GEMMs and the seed's identities.

conv2d:  y  = W · cols,  cols = im2col(x)     one GEMM over a strided window view (one copy)
         ∇W = ∇y · colsᵀ                      one GEMM, reusing the cached columns
         ∇x = col2im(Wᵀ · ∇y)                 one GEMM, then kh·kw strided slice-adds
The seed's way of writing ∇x, the full correlation of the zero-inserted ∇y with the flipped
kernel, is `conv2d_dx_full_correlation`; verify checks the two against each other, and both
against the explicit matrix K_conv (`kconv_matrix`) on small sizes. 1-D convolutions use these
kernels with a height of 1. Output sizes come from the array arithmetic here (padded size,
window count), never from the calculator's formulas, so that comparing the two is a real check.

Memory layout: the columns are (G, C/G·kh·kw, N·Ho·Wo), i.e. (C, kh, kw, N, Ho, Wo) in memory,
so every GEMM is one BLAS call per group on contiguous (or plainly transposed) operands, and
for a batch of 1 neither y nor ∇y needs a transposing copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

Array = NDArray[Any]  # float64 or float32 (index arrays: int)
Cache = tuple[Any, ...]  # what a backward needs from its forward
Pair = tuple[int, int]  # (h, w)
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_dx_full_correlation",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "kconv_index",
    "kconv_matrix",
    "kconv_full",
]


# ---------------------------------------------------------------------------------------------
# building blocks: padding, window views, im2col, and the clipped col2im (scatter-add)
# ---------------------------------------------------------------------------------------------


def pad2d(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """x (N, C, H, W) padded to (N, C, H+t+b, W+l+r) with `value`; x itself when nothing to pad."""
    (top, bottom), (left, right) = pads
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    shape = (n, c, h + top + bottom, w + left + right)
    # one allocation and one copy (np.pad is a generic, slower path for this)
    out = np.zeros(shape, dtype=x.dtype) if value == 0 else np.full(shape, value, dtype=x.dtype)
    out[:, :, top : top + h, left : left + w] = x
    return out


def windows(xp: Array, kernel: Pair, stride: Pair, dilation: Pair) -> Array:
    """A read-only (N, C, kh, kw, Ho, Wo) view of every kernel window of xp (N, C, Hp, Wp); no copy."""
    n, c, hp, wp = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    # the number of windows that fit: this is where every output size in this module comes from
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(
            f"kernel {kh}x{kw} (dilation {dh}x{dw}) exceeds the padded input {hp}x{wp}: no output"
        )
    s = xp.strides
    shape = (n, c, kh, kw, ho, wo)
    strides = (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw)
    return as_strided(xp, shape, strides, writeable=False)


def im2col(xp: Array, kernel: Pair, stride: Pair, dilation: Pair, groups: int) -> tuple[Array, int, int]:
    """Columns (G, C/G·kh·kw, N·Ho·Wo) of a padded input xp (N, C, Hp, Wp), with Ho and Wo."""
    view = windows(xp, kernel, stride, dilation)
    n, c, kh, kw, ho, wo = view.shape
    if kh == kw == 1 and n == 1 and tuple(stride) == (1, 1):
        # a 1x1 stride-1 conv of one sample: the input already is its column matrix (a view,
        # kept in the cache as PyTorch keeps its input: callers must not overwrite x in place)
        return xp.reshape(groups, c // groups, ho * wo), ho, wo
    # the one copy: windows laid out (C, kh, kw, N, Ho, Wo), so the GEMM's K axis is (C, kh, kw)
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=xp.dtype)
    np.copyto(cols, view.transpose(1, 2, 3, 0, 4, 5))
    return cols.reshape(groups, (c // groups) * kh * kw, n * ho * wo), ho, wo


def _tap_span(offset: int, stride: int, n_out: int, pad: int, size: int) -> tuple[int, int, int]:
    """For one kernel tap: the outputs [lo, hi) whose input index o·s + offset − pad lies in [0, size), and the first such index."""
    lo = max(0, -((offset - pad) // stride))  # ceil((pad - offset) / stride)
    hi = min(n_out, (size - 1 + pad - offset) // stride + 1)
    return lo, hi, lo * stride + offset - pad


def col2im_into(
    dst: Array, patches: Array, stride: Pair, pads: tuple[int, int], dilation: Pair
) -> Array:
    """dst (N, C, H, W) += the adjoint of im2col of patches (N, C, kh, kw, Ho, Wo), padding dropped.

    One strided slice-add per kernel tap. Taps that land in the padding are clipped away rather
    than accumulated into a padded buffer, which saves the padded allocation and the crop copy.
    """
    _, _, h, w = dst.shape
    _, _, kh, kw, ho, wo = patches.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pads, dilation
    for i in range(kh):
        r_lo, r_hi, r0 = _tap_span(i * dh, sh, ho, ph, h)
        if r_hi <= r_lo:
            continue
        rows = slice(r0, r0 + (r_hi - r_lo - 1) * sh + 1, sh)
        for j in range(kw):
            c_lo, c_hi, c0 = _tap_span(j * dw, sw, wo, pw, w)
            if c_hi <= c_lo:
                continue
            cols = slice(c0, c0 + (c_hi - c_lo - 1) * sw + 1, sw)
            dst[:, :, rows, cols] += patches[:, :, i, j, r_lo:r_hi, c_lo:c_hi]
    return dst


def col2im(cols: Array, padded_shape: tuple[int, ...], kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> Array:
    """Sum columns (C·kh·kw, N·Ho·Wo) back into a zero array of padded_shape (N, C, Hp, Wp)."""
    n, c, _, _ = padded_shape
    (kh, kw), (ho, wo) = kernel, out_hw
    patches = cols.reshape(c, kh, kw, n, ho, wo).transpose(3, 0, 1, 2, 4, 5)
    out = np.zeros(padded_shape, dtype=cols.dtype)
    return col2im_into(out, patches, stride, (0, 0), dilation)


def _check_groups(c_in: int, w_in: int, c_out: int, groups: int) -> None:
    """Raise ValueError unless the channel counts split into `groups` equal groups."""
    if groups < 1 or c_in % groups or c_out % groups or c_in // groups != w_in:
        raise ValueError(f"channels {c_in} -> {c_out} do not fit groups={groups} with a weight of {w_in} input channels per group")


# ---------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------


def conv2d_forward(x: Array, w: Array, b: Array | None, stride: Pair, padding: Pads, dilation: Pair, groups: int) -> tuple[Array, Cache]:
    """y (N, Co, Ho, Wo) = x (N, C, H, W) ⋆ w (Co, C/G, kh, kw) + b (Co,) or None; returns (y, cache)."""
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    _check_groups(c, cg, co, groups)
    stride, dilation = tuple(stride), tuple(dilation)
    xp = pad2d(x, padding)
    cols, ho, wo = im2col(xp, (kh, kw), stride, dilation, groups)  # type: ignore[arg-type]
    wmat = w.reshape(groups, co // groups, cg * kh * kw)
    y = np.matmul(wmat, cols)  # (G, Co/G, N·Ho·Wo): the one GEMM
    # (Co, N, Ho, Wo) -> (N, Co, Ho, Wo): free for N = 1 (a size-1 axis moves), one copy otherwise
    y = np.ascontiguousarray(y.reshape(co, n, ho, wo).transpose(1, 0, 2, 3))
    if b is not None:
        y += b.reshape(1, co, 1, 1)
    cache = (cols, wmat, w.shape, x.shape, stride, padding, dilation, groups, b is not None)
    return y, cache


def conv2d_backward(dy: Array, cache: Cache) -> tuple[Array, Array, Array | None]:
    """(∇x (N, C, H, W), ∇w (Co, C/G, kh, kw), ∇b (Co,) or None) from ∇y (N, Co, Ho, Wo) and the forward's cache."""
    cols, wmat, w_shape, x_shape, stride, padding, dilation, groups, has_bias = cache
    n, co, ho, wo = dy.shape
    kh, kw = w_shape[2], w_shape[3]
    # (N, Co, Ho, Wo) -> (G, Co/G, N·Ho·Wo), the columns' order: a view for N = 1
    dy_mat = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(groups, co // groups, n * ho * wo)
    dw = np.matmul(dy_mat, cols.transpose(0, 2, 1)).reshape(w_shape)  # one GEMM on the cached columns
    dcols = np.matmul(wmat.transpose(0, 2, 1), dy_mat)  # one GEMM: (G, C/G·kh·kw, N·Ho·Wo)
    c = x_shape[1]
    patches = dcols.reshape(c, kh, kw, n, ho, wo).transpose(3, 0, 1, 2, 4, 5)
    dx = col2im_into(np.zeros(x_shape, dtype=dcols.dtype), patches, stride, (padding[0][0], padding[1][0]), dilation)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# the seed's ∇x: full correlation of the zero-inserted ∇y with the flipped, channel-swapped kernel
# ---------------------------------------------------------------------------------------------


def flipped_transposed(w: Array, groups: int) -> Array:
    """(C, Co/G, kh, kw) from w (Co, C/G, kh, kw): each tap window rotated 180°, in/out channels swapped per group."""
    co, cg, kh, kw = w.shape
    swapped = w.reshape(groups, co // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(groups * cg, co // groups, kh, kw)
    return swapped[:, :, ::-1, ::-1]


def zero_insert(dy: Array, stride: Pair) -> Array:
    """(N, C, (Ho−1)·sh+1, (Wo−1)·sw+1): ∇y with s−1 zeros between its entries (the positions a strided forward skipped)."""
    n, c, ho, wo = dy.shape
    sh, sw = stride
    out = np.zeros((n, c, (ho - 1) * sh + 1, (wo - 1) * sw + 1), dtype=dy.dtype)
    out[:, :, ::sh, ::sw] = dy
    return out


def conv2d_dx_full_correlation(dy: Array, w: Array, x_shape: tuple[int, ...], stride: Pair, padding: Pads, dilation: Pair, groups: int) -> Array:
    """∇x (N, C, H, W) the seed's way, from ∇y (N, Co, Ho, Wo) and w (Co, C/G, kh, kw).

    Written independently of conv2d's im2col path (a direct sum over kernel taps), so that verify
    compares two different computations: zero-insert s−1 zeros between ∇y's entries, pad by the
    dilated k−1 (and on the far side up to the padded input's end, where the forward's last
    window stopped short), correlate with rot180(w) with in/out channels swapped, crop the padding.
    """
    n, c, h, wd = x_shape
    co, cg, kh, kw = w.shape
    dh, dw = dilation
    (top, bottom), (left, right) = padding
    hp, wp = h + top + bottom, wd + left + right
    dz = zero_insert(dy, stride)
    far_h, far_w = hp - dz.shape[2], wp - dz.shape[3]  # = d(k-1) + rows the last window never reached
    full = pad2d(dz, ((dh * (kh - 1), far_h), (dw * (kw - 1), far_w)))
    rot = flipped_transposed(w, groups)  # (C, Co/G, kh, kw)
    dxp = np.zeros((n, c, hp, wp), dtype=np.result_type(dy, w))
    cog = co // groups
    for g in range(groups):
        outs, ins = slice(g * cg, (g + 1) * cg), slice(g * cog, (g + 1) * cog)
        for p in range(kh):
            for q in range(kw):
                shifted = full[:, ins, p * dh : p * dh + hp, q * dw : q * dw + wp]
                dxp[:, outs] += np.einsum("nohw,co->nchw", shifted, rot[outs, :, p, q])
    return np.ascontiguousarray(dxp[:, :, top : top + h, left : left + wd])


# ---------------------------------------------------------------------------------------------
# conv_transpose2d: the adjoint of conv2d (forward = conv2d's ∇x, ∇x = conv2d's forward)
# ---------------------------------------------------------------------------------------------


def conv_transpose2d_forward(
    x: Array, w: Array, b: Array | None, stride: Pair, padding: Pair, output_padding: Pair, dilation: Pair, groups: int
) -> tuple[Array, Cache]:
    """y (N, Cout, Hy, Wy) from x (N, Cin, H, W), w (Cin, Cout/G, kh, kw) as PyTorch, b (Cout,) or None."""
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    if groups < 1 or cin % groups or w.shape[0] != cin:
        raise ValueError(f"weight {tuple(w.shape)} does not fit {cin} input channels in groups={groups}")
    stride, padding, output_padding, dilation = tuple(stride), tuple(padding), tuple(output_padding), tuple(dilation)
    cout = cog * groups
    # every input pixel scatters its kernel patch over the full, uncropped output; the padding
    # then crops p from both ends (output_padding only lengthens the far end)
    full = [(size - 1) * s + d * (k - 1) + 1 + op for size, s, d, k, op in zip((h, wd), stride, dilation, (kh, kw), output_padding)]
    hy, wy = full[0] - 2 * padding[0], full[1] - 2 * padding[1]
    if hy < 1 or wy < 1:
        raise ValueError(f"padding {padding} leaves no output ({hy}x{wy})")
    wmat = w.reshape(groups, cin // groups, cog * kh * kw)
    x_mat = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(groups, cin // groups, n * h * wd)
    cols = np.matmul(wmat.transpose(0, 2, 1), x_mat)  # one GEMM: (G, Cout/G·kh·kw, N·H·W)
    patches = cols.reshape(cout, kh, kw, n, h, wd).transpose(3, 0, 1, 2, 4, 5)
    y = col2im_into(np.zeros((n, cout, hy, wy), dtype=cols.dtype), patches, stride, padding, dilation)  # type: ignore[arg-type]
    if b is not None:
        y += b.reshape(1, cout, 1, 1)
    return y, (x_mat, wmat, w.shape, x.shape, stride, padding, dilation, groups, b is not None)


def conv_transpose2d_backward(dy: Array, cache: Cache) -> tuple[Array, Array, Array | None]:
    """(∇x (N, Cin, H, W), ∇w (Cin, Cout/G, kh, kw), ∇b (Cout,) or None) from ∇y (N, Cout, Hy, Wy)."""
    x_mat, wmat, w_shape, x_shape, stride, padding, dilation, groups, has_bias = cache
    n, cin, h, wd = x_shape
    kh, kw = w_shape[2], w_shape[3]
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    dyp = pad2d(dy, ((ph, ph), (pw, pw)))
    # only the first H x W windows map back to x; an output_padding tail reaching past the last
    # window (possible when output_padding >= stride) is cut off so the window count is exact
    dyp = dyp[:, :, : (h - 1) * sh + dh * (kh - 1) + 1, : (wd - 1) * sw + dw * (kw - 1) + 1]
    cols, ho, wo = im2col(dyp, (kh, kw), stride, dilation, groups)  # (G, Cout/G·kh·kw, N·H·W)
    dx = np.matmul(wmat, cols)  # one GEMM: ∇x is conv2d's forward of ∇y with the same kernel
    dx = np.ascontiguousarray(dx.reshape(cin, n, ho, wo).transpose(1, 0, 2, 3))
    dw = np.matmul(x_mat, cols.transpose(0, 2, 1)).reshape(w_shape)  # one GEMM
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# K_conv: the convolution as a matrix (the seed's figure)
# ---------------------------------------------------------------------------------------------


def kconv_index(in_hw: Pair, k_hw: Pair, stride: Pair, padding: Pads, dilation: Pair) -> Array:
    """(Ho·Wo, H·W) int array: 0 where K_conv is zero, j where it is k_j (1-based, row-major kernel index).

    Rows are output positions, columns input positions, both row-major; a tap that lands in the
    zero padding multiplies nothing, so it has no column. For a 3x3 input and a 2x2 kernel
    (stride 1, no padding) the first row is [1, 2, 0, 3, 4, 0, 0, 0, 0].
    """
    (h, w), (kh, kw) = in_hw, k_hw
    (sh, sw), (dh, dw) = stride, dilation
    (top, bottom), (left, right) = padding
    ho = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    wo = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {kh}x{kw} exceeds the padded input: no output")
    # input row/column of every (output position, tap), broadcast over (oi, oj, i, j)
    oi, oj, i, j = np.ix_(np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw))
    r = oi * sh + i * dh - top
    c = oj * sw + j * dw - left
    r, c = np.broadcast_arrays(r, c)
    row = np.broadcast_to(oi * wo + oj, r.shape)
    tap = np.broadcast_to(i * kw + j + 1, r.shape)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    index = np.zeros((ho * wo, h * w), dtype=np.int64)
    # distinct taps of one window hit distinct inputs (dilation >= 1), so no entry is written twice
    index[row[inside], (r * w + c)[inside]] = tap[inside]
    return index


def kconv_matrix(k: Array, in_hw: Pair, stride: Pair, padding: Pads, dilation: Pair) -> Array:
    """K_conv (Ho·Wo, H·W) of a single-channel kernel k (kh, kw): vec(x ⋆ k) = K_conv · vec(x)."""
    k = np.asarray(k)
    index = kconv_index(in_hw, k.shape, stride, padding, dilation)
    values = np.concatenate([np.zeros(1, dtype=k.dtype), k.ravel()])  # index 0 -> 0
    return values[index]


def kconv_full(w: Array, x_shape: tuple[int, ...], stride: Pair, padding: Pads, dilation: Pair, groups: int) -> Array:
    """K_conv of a whole one-sample conv layer: (Co·Ho·Wo, C·H·W), a K_conv block per (out, in) channel pair of a group."""
    co, cg, kh, kw = w.shape
    c, h, wd = x_shape[1:]
    index = kconv_index((h, wd), (kh, kw), stride, padding, dilation)
    rows = index.shape[0]
    taps = np.concatenate([np.zeros((co, cg, 1), dtype=w.dtype), w.reshape(co, cg, kh * kw)], axis=2)
    blocks = taps[:, :, index]  # (Co, C/G, Ho·Wo, H·W)
    k = np.zeros((co, rows, groups, cg, h * wd), dtype=w.dtype)
    per_group = co // groups
    for g in range(groups):
        o = slice(g * per_group, (g + 1) * per_group)
        k[o, :, g] = blocks[o].transpose(0, 2, 1, 3)
    return k.reshape(co * rows, c * h * wd)
