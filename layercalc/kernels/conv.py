"""NumPy convolution kernels (NCHW, float64 or float32): im2col GEMMs and the seed's identities.

conv2d:  y = W · im2col(x)             one GEMM over a strided window view (one copy)
         ∇W = ∇y · im2col(x)ᵀ          one GEMM, reusing the cached columns
         ∇x = col2im(Wᵀ · ∇y)          one GEMM, then kh·kw strided slice-adds
The seed's way of writing ∇x, the full correlation of the zero-inserted ∇y with the flipped
kernel, is `conv2d_dx_full_correlation`; verify checks the two against each other, and against
the explicit matrix K_conv (`kconv_matrix`) on small sizes. 1-D convolutions use these kernels
with a height of 1. Output sizes come from the array arithmetic here, not from the calculator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pair = tuple[int, int]
Pads = tuple[tuple[int, int], tuple[int, int]]


def _windows(xp: Any, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Any, int, int]:
    """A (N, C, kh, kw, Ho, Wo) view of every kernel window of the padded input (no copy)."""
    n, c, h, w = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    s = xp.strides
    view = as_strided(xp, (n, c, kh, kw, ho, wo), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw), writeable=False)
    return view, ho, wo


def im2col(xp: Any, kernel: Pair, stride: Pair, dilation: Pair, groups: int) -> tuple[Any, int, int]:
    """Columns (G, C/G·kh·kw, N·Ho·Wo) of a padded input: one copy of the window view."""
    view, ho, wo = _windows(xp, kernel, stride, dilation)
    n, c = xp.shape[:2]
    cols = view.transpose(1, 2, 3, 0, 4, 5).reshape(groups, (c // groups) * kernel[0] * kernel[1], n * ho * wo)
    return cols, ho, wo


def col2im(cols: Any, padded_shape: tuple[int, ...], kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> Any:
    """Sum columns (C·kh·kw, N·Ho·Wo) back into a padded input: the adjoint of im2col."""
    n, c, hp, wp = padded_shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    patches = cols.reshape(c, kh, kw, n, ho, wo).transpose(3, 0, 1, 2, 4, 5)
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            out[:, :, top : top + sh * (ho - 1) + 1 : sh, left : left + sw * (wo - 1) + 1 : sw] += patches[:, :, i, j]
    return out


def _pad(x: Any, pads: Pads, value: float = 0.0) -> Any:
    if not any(pads[0] + pads[1]):
        return x
    return np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]), constant_values=value)


def conv2d_forward(x: Any, w: Any, b: Any, stride: Pair, padding: Pads, dilation: Pair, groups: int) -> tuple[Any, Any]:
    """y (N, Co, Ho, Wo) = x (N, C, H, W) ⋆ w (Co, C/G, kh, kw) + b (Co,) or None."""
    xp = _pad(x, padding)
    kernel = (w.shape[2], w.shape[3])
    cols, ho, wo = im2col(xp, kernel, stride, dilation, groups)
    co = w.shape[0]
    wmat = w.reshape(groups, co // groups, -1)
    y = np.matmul(wmat, cols).reshape(co, x.shape[0], ho, wo).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    else:
        y = np.ascontiguousarray(y)
    cache = (cols, wmat, w.shape, xp.shape, x.shape, stride, padding, dilation, groups, b is not None)
    return y, cache


def conv2d_backward(dy: Any, cache: Any) -> tuple[Any, Any, Any]:
    """(∇x, ∇w, ∇b) from ∇y (N, Co, Ho, Wo) and conv2d_forward's cache."""
    cols, wmat, w_shape, padded, x_shape, stride, padding, dilation, groups, has_bias = cache
    n, co, ho, wo = dy.shape
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, co // groups, n * ho * wo)
    dw = np.matmul(dy_mat, cols.transpose(0, 2, 1)).reshape(w_shape)
    dcols = np.matmul(wmat.transpose(0, 2, 1), dy_mat).reshape(-1, n * ho * wo)
    dxp = col2im(dcols, padded, (w_shape[2], w_shape[3]), stride, dilation, (ho, wo))
    (top, _), (left, _) = padding
    dx = dxp[:, :, top : top + x_shape[2], left : left + x_shape[3]]
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return np.ascontiguousarray(dx), dw, db


def flipped_transposed(w: Any, groups: int) -> Any:
    """The kernel of ∇x: rot180 of each tap window, input and output channels swapped per group."""
    co, cg, kh, kw = w.shape
    swapped = w.reshape(groups, co // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(groups * cg, co // groups, kh, kw)
    return swapped[:, :, ::-1, ::-1]


def zero_insert(dy: Any, stride: Pair) -> Any:
    """∇y with stride-1 zeros between its entries (what a strided forward skipped)."""
    n, c, ho, wo = dy.shape
    sh, sw = stride
    out = np.zeros((n, c, (ho - 1) * sh + 1, (wo - 1) * sw + 1), dtype=dy.dtype)
    out[:, :, ::sh, ::sw] = dy
    return out


def conv2d_dx_full_correlation(dy: Any, w: Any, x_shape: tuple[int, ...], stride: Pair, padding: Pads, dilation: Pair, groups: int) -> Any:
    """∇x the seed's way: full correlation of the zero-inserted ∇y with the flipped kernel."""
    kh, kw = w.shape[2], w.shape[3]
    (dh, dw) = dilation
    hp = x_shape[2] + sum(padding[0])
    wp = x_shape[3] + sum(padding[1])
    dz = zero_insert(dy, stride)
    # "full": pad by the dilated k-1 before; after, whatever reaches the padded input's end
    full = ((dh * (kh - 1), hp - dz.shape[2]), (dw * (kw - 1), wp - dz.shape[3]))
    dxp, _ = conv2d_forward(dz, flipped_transposed(w, groups), None, (1, 1), full, dilation, groups)
    (top, _), (left, _) = padding
    return dxp[:, :, top : top + x_shape[2], left : left + x_shape[3]]


def conv_transpose2d_forward(
    x: Any, w: Any, b: Any, stride: Pair, padding: Pair, output_padding: Pair, dilation: Pair, groups: int
) -> tuple[Any, Any]:
    """y = the adjoint of conv2d applied to x (N, Cin, H, W); w (Cin, Cout/G, kh, kw) as PyTorch."""
    n, cin, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    full = tuple(
        (size - 1) * s + d * (k - 1) + 1 + op
        for size, s, d, k, op in zip((h, wd), stride, dilation, (kh, kw), output_padding)
    )
    # scatter every input pixel through the kernel: col2im of Wᵀ·x, as conv2d's ∇x
    wmat = w.reshape(groups, cin // groups, -1)
    x_mat = x.transpose(1, 0, 2, 3).reshape(groups, cin // groups, n * h * wd)
    cols = np.matmul(wmat.transpose(0, 2, 1), x_mat).reshape(-1, n * h * wd)
    cout = w.shape[1] * groups
    yfull = col2im(cols, (n, cout, *full), (kh, kw), stride, dilation, (h, wd))
    (ph, pw) = padding
    y = np.ascontiguousarray(yfull[:, :, ph : full[0] - ph, pw : full[1] - pw])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y, (x, w, stride, padding, dilation, groups, full, b is not None)


def conv_transpose2d_backward(dy: Any, cache: Any) -> tuple[Any, Any, Any]:
    """(∇x, ∇w, ∇b): ∇x is a plain convolution of ∇y with the same kernel."""
    x, w, stride, padding, dilation, groups, full, has_bias = cache
    (ph, pw) = padding
    dyf = np.zeros((*dy.shape[:2], *full), dtype=dy.dtype)
    dyf[:, :, ph : ph + dy.shape[2], pw : pw + dy.shape[3]] = dy
    n, cin, h, wd = x.shape
    cols, ho, wo = im2col(dyf, (w.shape[2], w.shape[3]), stride, dilation, groups)
    # windows past the output_padding tail (when it exceeds the stride) never reach x: crop them
    wmat = w.reshape(groups, cin // groups, -1)
    cols = cols.reshape(groups, -1, n, ho, wo)[:, :, :, :h, :wd].reshape(groups, wmat.shape[2], n * h * wd)
    dx = np.matmul(wmat, cols).reshape(cin, n, h, wd).transpose(1, 0, 2, 3)
    x_mat = x.transpose(1, 0, 2, 3).reshape(groups, cin // groups, n * h * wd)
    dw = np.matmul(x_mat, cols.transpose(0, 2, 1)).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return np.ascontiguousarray(dx), dw, db


def kconv_index(in_hw: Pair, k_hw: Pair, stride: Pair, padding: Pads, dilation: Pair) -> Any:
    """K_conv of a single-channel conv as kernel indices: 0 = zero, j = k_j (1-based, row-major).

    Rows are output positions, columns input positions, both row-major; a tap that lands in
    the zero padding contributes nothing, so it has no column.
    """
    (h, w), (kh, kw) = in_hw, k_hw
    (top, bottom), (left, right) = padding
    ho = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    index = np.zeros((ho * wo, h * w), dtype=np.int64)
    for oi in range(ho):
        for oj in range(wo):
            for i in range(kh):
                for j in range(kw):
                    r = oi * stride[0] + i * dilation[0] - top
                    c = oj * stride[1] + j * dilation[1] - left
                    if 0 <= r < h and 0 <= c < w:
                        index[oi * wo + oj, r * w + c] = i * kw + j + 1
    return index


def kconv_matrix(k: Any, in_hw: Pair, stride: Pair, padding: Pads, dilation: Pair) -> Any:
    """K_conv (Ho·Wo, H·W) of a single-channel kernel k (kh, kw): vec(x ⋆ k) = K_conv · vec(x)."""
    index = kconv_index(in_hw, k.shape, stride, padding, dilation)
    values = np.concatenate([[0.0], k.ravel()])
    return values[index]


def kconv_full(w: Any, x_shape: tuple[int, ...], stride: Pair, padding: Pads, dilation: Pair, groups: int) -> Any:
    """K_conv of a whole (one-sample) conv layer: (Co·Ho·Wo, C·H·W), channel blocks per group."""
    co, cg = w.shape[:2]
    c, h, wd = x_shape[1:]
    blocks = [[kconv_matrix(w[o, i], (h, wd), stride, padding, dilation) for i in range(cg)] for o in range(co)]
    rows = blocks[0][0].shape[0]
    k = np.zeros((co * rows, c * h * wd))
    per_group = co // groups
    for o in range(co):
        g = o // per_group
        for i in range(cg):
            col = (g * cg + i) * h * wd
            k[o * rows : (o + 1) * rows, col : col + h * wd] = blocks[o][i]
    return k
