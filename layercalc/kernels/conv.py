"""NumPy convolution kernels for any number of spatial dims: (N, C, *spatial), float64 or float32.

conv:    y  = W · cols,  cols = im2col(x)     one GEMM over a strided window view (one copy)
         ∇W = ∇y · colsᵀ                      one GEMM, reusing the cached columns
         ∇x = col2im(Wᵀ · ∇y)                 one GEMM, then one strided slice-add per kernel tap or input phase (scatter)
            or, stride 1 only, ∇y ⋆ rot180(W)  im2col of the zero-bordered ∇y, one GEMM (gather)
The backward takes whichever ∇x moves fewer elements for the shape: the gather where the
activations outweigh the kernel (early layers), the scatter for deep layers and strided convs.
Where the scatter's product is formed as (∇yᵀ·W)ᵀ (fewer output positions than channels), ∇x is
summed channels-last, along the product's rows, and transposed once.
The seed's way of writing ∇x, the full correlation of the zero-inserted ∇y with the flipped
kernel, is `conv_dx_full_correlation`; verify checks the two against each other, and both
against the explicit matrix K_conv (`kconv_matrix`) on small sizes. A transposed conv is the
adjoint of the conv of its weight: its forward is that conv's ∇x, its ∇x that conv's forward and
its ∇W that conv's ∇W, so it runs on these same kernels. The spatial rank comes from the arrays
(x.ndim − 2), so conv1d, conv2d and conv3d, and the transposed convolutions, are one code path.
Output sizes come from the same integer formulas as the calculator's shape rules
(layers/geometry.py); the independent check of both is PyTorch, in the tests.

Memory layout: the columns are (G, C/G·∏k, N·∏out), i.e. (C, *k, N, *out) in memory, so every
GEMM is one BLAS call per group on contiguous (or plainly transposed) operands, and for a batch
of 1 neither y nor ∇y needs a transposing copy. Columns over WHOLE_MAX bytes are not kept: the
forward builds and multiplies them a slab of output rows at a time, and the backward rebuilds
them from the padded input (one more copy, into memory already mapped, instead of a page fault
per 4 KiB of a fresh matrix). Where the first axis's taps overlap and one sample's output row
is a wide GEMM (3-D convs at stride 1 in depth), those slabs are row columns (`row_im2col`): the
first axis's taps are read from overlapping padded rows, not copied, so the copy is about k₀
times smaller and each output row is one product. Temporaries (slab columns, column gradients,
∇y's zero border) live in named scratch buffers reused from call to call, for the same reason.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

from ..layers.geometry import conv_out, conv_transpose_out

Array = NDArray[Any]  # float64 or float32 (index arrays: int)
Cache = tuple[Any, ...]  # what a backward needs from its forward
Sizes = tuple[int, ...]  # one int per spatial dim
Pads = tuple[tuple[int, int], ...]  # (before, after) per spatial dim

__all__ = [
    "conv_forward",
    "conv_backward",
    "conv_dx_full_correlation",
    "conv_transpose_forward",
    "conv_transpose_backward",
    "kconv_index",
    "kconv_matrix",
    "kconv_full",
    "kconv_adjoint",
]


def _x(sizes: Any) -> str:
    return "x".join(str(int(s)) for s in sizes)


# ---------------------------------------------------------------------------------------------
# building blocks: padding, window views, im2col, and the clipped col2im (scatter-add)
# ---------------------------------------------------------------------------------------------


def pad(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """x (N, C, *S) padded by (before, after) per spatial dim with `value`; x itself when nothing to pad."""
    if not any(lo or hi for lo, hi in pads):
        return x
    shape = (*x.shape[:2], *(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pads)))
    # one allocation and one copy (np.pad is a generic, slower path for this)
    out = np.zeros(shape, dtype=x.dtype) if value == 0 else np.full(shape, value, dtype=x.dtype)
    out[(slice(None), slice(None), *(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[2:], pads)))] = x
    return out


SCRATCH_MAX = 1 << 25  # bytes: larger temporaries are allocated afresh rather than held between calls
_scratch = threading.local()  # each thread its own buffers: two threads' convs never share one


def scratch(name: str, shape: tuple[int, ...], dtype: Any) -> Array:
    """An uninitialised array of `shape` in the named reusable buffer (fresh when over SCRATCH_MAX bytes).

    Large temporaries freshly allocated on every call are fresh pages from the OS, and a page
    fault per 4 KiB costs as much as the copy that fills it, far more on some virtual machines.
    A buffer's contents last until the same thread's next request of its name.
    """
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > SCRATCH_MAX:
        return np.empty(shape, dtype=dtype)
    buffers: dict[str, Array] = _scratch.__dict__
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def windows(xp: Array, kernel: Sizes, stride: Sizes, dilation: Sizes) -> Array:
    """A read-only (N, C, *kernel, *out) view of every kernel window of xp (N, C, *padded); no copy."""
    n, c, *sizes = xp.shape
    outs = tuple(conv_out(p, k, s, 0, d) for p, k, s, d in zip(sizes, kernel, stride, dilation))
    if min(outs) < 1:
        raise ValueError(
            f"kernel {_x(kernel)} (dilation {_x(dilation)}) exceeds the padded input {_x(sizes)}: no output"
        )
    st = xp.strides
    spatial = st[2:]
    strides = (st[0], st[1], *(a * d for a, d in zip(spatial, dilation)), *(a * s for a, s in zip(spatial, stride)))
    return as_strided(xp, (n, c, *kernel, *outs), strides, writeable=False)


def im2col(xp: Array, kernel: Sizes, stride: Sizes, dilation: Sizes, groups: int, reuse: str = "") -> tuple[Array, Sizes]:
    """Columns (G, C/G·∏k, N·∏out) of a padded input xp (N, C, *padded), and the output sizes.

    With `reuse`, the columns are built in that named scratch buffer (valid until its next use).
    """
    view = windows(xp, kernel, stride, dilation)
    n, c = view.shape[:2]
    r = len(kernel)
    outs = view.shape[2 + r :]
    if n == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in stride):
        # a 1x1 stride-1 conv of one sample: the input already is its column matrix (a view,
        # kept in the cache as PyTorch keeps its input: callers must not overwrite x in place)
        return xp.reshape(groups, c // groups, math.prod(outs)), outs
    # the one copy: windows laid out (C, *k, N, *out), so the GEMM's K axis is (C, *k)
    shape = (c, *kernel, n, *outs)
    cols = scratch(reuse, shape, xp.dtype) if reuse else np.empty(shape, dtype=xp.dtype)
    np.copyto(cols, view.transpose(1, *range(2, 2 + r), 0, *range(2 + r, 2 + 2 * r)))
    return cols.reshape(groups, (c // groups) * math.prod(kernel), n * math.prod(outs)), outs


def _tap_span(offset: int, stride: int, n_out: int, pad: int, size: int) -> tuple[int, int, int]:
    """For one kernel tap: the outputs [lo, hi) whose input index o·s + offset − pad lies in [0, size), and the first such index."""
    lo = max(0, -((offset - pad) // stride))  # ceil((pad - offset) / stride)
    hi = min(n_out, (size - 1 + pad - offset) // stride + 1)
    return lo, hi, lo * stride + offset - pad


def col2im_into(dst: Array, patches: Array, stride: Sizes, pads: Sizes, dilation: Sizes) -> Array:
    """dst (N, C, *S) += the adjoint of im2col of patches (N, C, *k, *out), padding dropped.

    One strided slice-add per kernel tap, or for a strided conv with many taps one per input
    phase (`_col2im_phases`). Taps that land in the padding are clipped away rather than
    accumulated into a padded buffer, which saves the padded allocation and the crop copy.
    """
    sizes = dst.shape[2:]
    r = len(sizes)
    kernel, outs = patches.shape[2 : 2 + r], patches.shape[2 + r :]
    if patches.strides[-1] == patches.itemsize and _phases_pay(kernel, stride, dilation, patches.itemsize):
        # (not when the patches are a transposed view: their reads are strided in any case, and
        # unit-stride writes alone were measured to gain nothing)
        return _col2im_phases(dst, patches, stride, pads, dilation)
    # per axis and tap: (outputs [lo, hi) that land inside, the strided destination slice)
    spans: list[list[tuple[slice, slice] | None]] = []
    for a in range(r):
        axis: list[tuple[slice, slice] | None] = []
        for i in range(kernel[a]):
            lo, hi, first = _tap_span(i * dilation[a], stride[a], outs[a], pads[a], sizes[a])
            axis.append((slice(lo, hi), slice(first, first + (hi - lo - 1) * stride[a] + 1, stride[a])) if hi > lo else None)
        spans.append(axis)
    for taps in itertools.product(*(range(k) for k in kernel)):
        parts = [spans[a][i] for a, i in enumerate(taps)]
        if any(p is None for p in parts):
            continue
        src = tuple(p[0] for p in parts)  # type: ignore[index]
        dst[(slice(None), slice(None), *(p[1] for p in parts))] += patches[(slice(None), slice(None), *taps, *src)]  # type: ignore[index]
    return dst


Phase = tuple[int, range, int]  # one axis's phase: (its first tap's offset k·d, its taps, their spacing within the phase)


def _phases(kernel: int, stride: int, dilation: int) -> list[Phase]:
    """One axis's taps grouped by the phase (k·d mod s) of the padded inputs they touch; only phases some tap touches.

    Tap k touches padded input o·s + k·d for output o: element o + k·d // s of its phase, the
    inputs ≡ k·d mod s. Taps k and k + s/g (g = gcd(s, d)) share a phase, d/g elements apart
    in it; the phase's first tap k0 < s/g starts at input k0·d.
    """
    g = math.gcd(stride, dilation)
    step = stride // g
    return [(k0 * dilation, range(k0, kernel, step), dilation // g) for k0 in range(min(step, kernel))]


def _phases_pay(kernel: Sizes, stride: Sizes, dilation: Sizes, itemsize: int) -> bool:
    """True when a strided conv has enough taps per input phase it reads: 2 in float32, 4 in float64.

    A phase costs a zeroed buffer and one strided add of it into ∇x; each of its taps gains a
    unit-stride add in place of a strided one, worth more in float32 (twice the SIMD lanes a
    vector). Measured, col2im's time in the conv's backward (bench/profile_conv.py): ResNet's
    3x3/2 (2.25 taps a phase) gains 10% in float32 and loses 10% in float64, r3d_18's 3x3x3/2
    (3.4) gains 15-20% and loses 5%, the stems 7x7/2 and 3x7x7/1,2,2 (12 and 37) gain 10-20% in
    float64 and 20-40% in float32; on col2im alone, a 1-D 3/2 (1.5) loses 5-20%.
    """
    phases = math.prod(len(_phases(k, s, d)) for k, s, d in zip(kernel, stride, dilation))
    return any(s > 1 for s in stride) and math.prod(kernel) >= phases * (4 if itemsize >= 8 else 2)


def _col2im_phases(dst: Array, patches: Array, stride: Sizes, pads: Sizes, dilation: Sizes) -> Array:
    """col2im_into (dst (N, C, *S) += patches (N, C, *k, *out)) by input phases: each phase's taps summed in a contiguous buffer, added into dst once.

    A tap's slice-add into dst is strided in the innermost axis, at a fraction of a contiguous
    add's speed; into its phase's buffer it is unit-stride, and only one strided add a phase remains.
    """
    sizes = dst.shape[2:]
    r = len(sizes)
    kernel, outs = patches.shape[2 : 2 + r], patches.shape[2 + r :]
    every = (slice(None), slice(None))
    for axes in itertools.product(*map(_phases, kernel, stride, dilation)):
        # element j of the phase is padded input first + j·s: [lo, hi) the elements inside dst
        inside = [_tap_span(first, s, sp * (len(taps) - 1) + o, p, size) for (first, taps, sp), s, o, p, size in zip(axes, stride, outs, pads, sizes)]
        if any(hi <= lo for lo, hi, _ in inside):
            continue  # the whole phase lands in the padding
        acc = scratch("phase", (*dst.shape[:2], *(hi - lo for lo, hi, _ in inside)), dst.dtype)
        acc.fill(0)
        for parts in itertools.product(*map(_phase_adds, axes, outs, inside)):
            acc[(*every, *(a for a, _, _ in parts))] += patches[(*every, *(k for _, _, k in parts), *(o for _, o, _ in parts))]
        dst[(*every, *(slice(f, f + (hi - lo - 1) * s + 1, s) for (lo, hi, f), s in zip(inside, stride)))] += acc
    return dst


def _phase_adds(phase: Phase, n_out: int, inside: tuple[int, int, int]) -> list[tuple[slice, slice, int]]:
    """One axis's taps of a phase whose outputs land in its elements [lo, hi): per tap (those elements less lo, those outputs, the tap)."""
    _, taps, spacing = phase
    lo, hi, _ = inside
    adds = []
    for i, k in enumerate(taps):  # the phase's i-th tap: output o on element i·spacing + o
        a, b = max(lo, i * spacing), min(hi, i * spacing + n_out)
        if a < b:
            adds.append((slice(a - lo, b - lo), slice(a - i * spacing, b - i * spacing), k))
    return adds


def _to_nc_first(a: Array, r: int) -> Array:
    """(C, *k, N, *out) -> (N, C, *k, *out) as a view: the columns' memory order to col2im's."""
    return a.transpose(r + 1, 0, *range(1, r + 1), *range(r + 2, 2 * r + 2))


def _check_groups(c_in: int, w_in: int, c_out: int, groups: int) -> None:
    """Raise ValueError unless the channel counts split into `groups` equal groups."""
    if groups < 1 or c_in % groups or c_out % groups or c_in // groups != w_in:
        raise ValueError(f"channels {c_in} -> {c_out} do not fit groups={groups} with a weight of {w_in} input channels per group")


# ---------------------------------------------------------------------------------------------
# convolution (correlation, as every framework)
# ---------------------------------------------------------------------------------------------


def conv_forward(x: Array, w: Array, b: Array | None, stride: Sizes, padding: Pads, dilation: Sizes, groups: int) -> tuple[Array, Cache]:
    """y (N, Co, *out) = x (N, C, *S) ⋆ w (Co, C/G, *k) + b (Co,) or None; returns (y, cache)."""
    n, c = x.shape[:2]
    co, cg, *kernel = w.shape
    r = len(kernel)
    if x.ndim != r + 2:
        raise ValueError(f"input {x.shape} and weight {w.shape} differ in spatial rank")
    _check_groups(c, cg, co, groups)
    stride, dilation, padding = tuple(stride), tuple(dilation), tuple(tuple(p) for p in padding)
    geometry = (tuple(kernel), stride, dilation, groups)
    xp = pad(x, padding)  # type: ignore[arg-type]
    outs = windows(xp, *geometry[:3]).shape[2 + r :]
    wmat = w.reshape(groups, co // groups, cg * math.prod(kernel))
    row_bytes = c * math.prod(kernel) * n * math.prod(outs[1:]) * xp.itemsize
    slabs = _slabs(outs[0], row_bytes, n * math.prod(outs[1:]))
    rows = outs[0] * row_bytes > WHOLE_MAX and _rows_pay(geometry, n, outs)
    if len(slabs) == 1 and not rows:
        cols, _ = im2col(xp, *geometry)
        y = np.matmul(wmat, cols)  # (G, Co/G, N·∏out): the one GEMM
        # (Co, N, *out) -> (N, Co, *out): free for N = 1 (a size-1 axis moves), one copy otherwise
        y = np.ascontiguousarray(y.reshape(co, n, *outs).swapaxes(0, 1))
    else:
        # columns too large to keep: built and multiplied a slab of output rows at a time (as row
        # columns where those pay), in a reused buffer, and rebuilt by the backward from the padded input
        cols, y = None, np.empty((n, co, *outs), dtype=np.result_type(xp, wmat))
        if rows:
            _rows_forward(xp, wmat, geometry, y)
        else:
            for lo, hi in slabs:
                _slab_product(wmat, _slab_cols(xp, geometry, lo, hi), y, lo, hi)
    if b is not None:
        y += b.reshape(1, co, *([1] * r))
    # the padded input only when the backward must rebuild the columns from it
    cache = (cols, xp if cols is None else None, wmat, w.shape, x.shape, stride, padding, dilation, groups, b is not None)
    return y, cache


def _slab_cols(xp: Array, geometry: tuple[Sizes, Sizes, Sizes, int], lo: int, hi: int) -> Array:
    """Columns (G, C/G·∏k, N·(hi−lo)·∏out[1:]) of output rows [lo, hi) along the first spatial axis."""
    kernel, stride, dilation, groups = geometry
    first = lo * stride[0]
    return im2col(xp[:, :, first : (hi - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1], *geometry, reuse="cols")[0]


def _slab_product(wmat: Array, cols: Array, out: Array, lo: int, hi: int) -> None:
    """out[:, :, lo:hi] (N, Co, rows, *rest) = wmat (G, Co/G, K) · cols (G, K, N·rows·∏rest), in (Co, N) order."""
    n, co, _, *rest = out.shape
    if n == 1:
        # one sample: the rows are (Co, rows·∏rest) with a plain row stride, so the GEMM writes
        # them in place (the reshape of a slice of a contiguous array is a view)
        np.matmul(wmat, cols, out=out[0, :, lo:hi].reshape(wmat.shape[0], wmat.shape[1], -1))
        return
    part = np.matmul(wmat, cols, out=scratch("product", (*wmat.shape[:2], cols.shape[2]), out.dtype))
    out[:, :, lo:hi] = part.reshape(co, n, hi - lo, *rest).swapaxes(0, 1)


def conv_backward(dy: Array, cache: Cache, input_grad: bool = True) -> tuple[Array | None, Array, Array | None]:
    """(∇x (N, C, *S) or None without input_grad, ∇w (Co, C/G, *k), ∇b (Co,) or None) from ∇y (N, Co, *out) and the forward's cache."""
    cols, xp, wmat, w_shape, x_shape, stride, padding, dilation, groups, has_bias = cache
    n, co, *outs = dy.shape
    kernel = tuple(w_shape[2:])
    gather = input_grad and _gather_pays(x_shape, w_shape, stride, padding, dilation)
    scatter = input_grad and not gather
    if cols is not None:
        dy_mat = _as_columns_rows(dy, groups)
        dw = np.matmul(dy_mat, cols.transpose(0, 2, 1)).reshape(w_shape)  # one GEMM on the cached columns
        dx = _dx_scatter(dy_mat, wmat, x_shape, kernel, tuple(outs), stride, padding, dilation) if scatter else None
    else:
        dw, dx = _backward_in_slabs(dy, xp, wmat, x_shape, (kernel, stride, dilation, groups), padding, scatter)
        dw = dw.reshape(w_shape)
    if gather:
        dx = _dx_gather(dy, wmat.reshape(w_shape), x_shape, padding, dilation, groups)
    db = dy.sum(axis=(0, *range(2, dy.ndim))) if has_bias else None
    return dx, dw, db


def _backward_in_slabs(
    dy: Array, xp: Array, wmat: Array, x_shape: tuple[int, ...], geometry: tuple[Sizes, Sizes, Sizes, int], padding: Pads, scatter: bool
) -> tuple[Array, Array | None]:
    """(∇w as (G, Co/G, C/G·∏k), ∇x (N, C, *S) by the scatter or None) with the columns rebuilt a slab of output rows at a time."""
    kernel, stride, dilation, groups = geometry
    n, _, *outs = dy.shape
    dtype = np.result_type(dy, wmat)
    dw = np.zeros(wmat.shape, dtype=dtype)
    dx = np.zeros(x_shape, dtype=dtype) if scatter else None
    rows = _rows_pay(geometry, n, tuple(outs))
    if rows:
        _rows_dw(dy, xp, geometry, dw)
        if dx is None:
            return dw, dx
    row_bytes = x_shape[1] * math.prod(kernel) * n * math.prod(outs[1:]) * xp.itemsize
    for lo, hi in _slabs(outs[0], row_bytes, n * math.prod(outs[1:])):
        dy_mat = _as_columns_rows(dy[:, :, lo:hi], groups)  # this slab's ∇y, (G, Co/G, N·rows·∏out[1:])
        if not rows:
            dw += np.matmul(dy_mat, _slab_cols(xp, geometry, lo, hi).transpose(0, 2, 1), out=scratch("product", dw.shape, dtype))
        if dx is not None:
            # the slab's outputs start lo rows in, as if the padding were lo·stride rows less
            shifted = ((padding[0][0] - lo * stride[0], 0), *padding[1:])
            _dx_scatter(dy_mat, wmat, x_shape, kernel, (hi - lo, *outs[1:]), stride, shifted, dilation, dx)
    return dw, dx


def _gather_pays(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Sizes, padding: Pads, dilation: Sizes) -> bool:
    """True when ∇x of a stride-1 conv moves fewer elements as a correlation (gather) than through col2im (scatter).

    Scatter: the GEMM writes the ∏k-times larger column gradient, then ∏k slice-adds read it and
    read and write ∇x. Gather: ∇y is copied into a zero border, its ∏k windows copied into
    columns, the kernel flipped into a copy, and the GEMM writes ∇x alone. Deep layers, whose
    kernels outweigh their activations, keep the scatter; strided convs always do (a gather
    there would multiply by the zeros a stride leaves between ∇y's entries).
    """
    if any(s != 1 for s in stride):
        return False
    n, c, *sizes = x_shape
    co, cg, *kernel = w_shape
    taps, volume = math.prod(kernel), math.prod(sizes)
    outs = math.prod(sz + lo + hi - d * (k - 1) for sz, (lo, hi), d, k in zip(sizes, padding, dilation, kernel))
    scatter = 4 * n * c * taps * outs + n * c * volume
    bordered = math.prod(sz + d * (k - 1) for sz, d, k in zip(sizes, dilation, kernel))
    gather = n * co * (bordered + 2 * taps * volume) + 2 * co * cg * taps + n * c * volume
    return gather < scatter


def _as_columns_rows(dy: Array, groups: int) -> Array:
    """∇y (N, Co, *out) as (G, Co/G, N·∏out), the columns' order: a view for N = 1."""
    n, co = dy.shape[:2]
    return np.ascontiguousarray(dy.swapaxes(0, 1)).reshape(groups, co // groups, -1)


def conv_input_grad(dy: Array, w: Array, x_shape: tuple[int, ...], stride: Sizes, padding: Pads, dilation: Sizes, groups: int) -> Array:
    """∇x (N, C, *S) of x ⋆ w (Co, C/G, *k) from ∇y (N, Co, *out), by the gather or the scatter,
    whichever moves less (the forward of the transposed conv of weight w)."""
    if _gather_pays(x_shape, w.shape, stride, padding, dilation):
        return _dx_gather(dy, w, x_shape, padding, dilation, groups)
    wmat = w.reshape(groups, w.shape[0] // groups, -1)
    return _dx_scatter(_as_columns_rows(dy, groups), wmat, x_shape, tuple(w.shape[2:]), tuple(dy.shape[2:]), stride, padding, dilation)


def _dx_scatter(
    dy_mat: Array, wmat: Array, x_shape: tuple[int, ...], kernel: Sizes, outs: Sizes, stride: Sizes, padding: Pads, dilation: Sizes, into: Array | None = None
) -> Array:
    """∇x (N, C, *S) = col2im(Wᵀ · ∇y) from ∇y as (G, Co/G, N·∏out) and W as (G, Co/G, C/G·∏k), added into `into` if given."""
    n, c = x_shape[:2]
    r = len(kernel)
    g, cog, m = dy_mat.shape
    if g == 1 and m < cog:
        # OpenBLAS runs Wᵀ·∇y with few columns (deep layers) at up to half speed; (∇yᵀ·W)ᵀ is
        # the same product as a plain GEMM
        dcols_t = scratch("dcols", (g, m, wmat.shape[2]), np.result_type(dy_mat, wmat))
        np.matmul(dy_mat.transpose(0, 2, 1), wmat, out=dcols_t)
        if into is None:
            # its rows are (N, *out) and its columns (C, *k): channel next to channel, a kernel's
            # taps apart. col2im reading it in ∇x's (N, C, *S) order would stride a whole row per
            # element; summed into a channels-last ∇x instead, every slice-add runs along C (about
            # 3x faster at ResNet's 7x7 and 14x14), and one transposing copy puts ∇x in order
            patches = dcols_t.reshape(n, *outs, c, *kernel).transpose(0, r + 1, *range(r + 2, 2 * r + 2), *range(1, r + 1))
            last = np.zeros((n, *x_shape[2:], c), dtype=dcols_t.dtype)
            dst = last.transpose(0, r + 1, *range(1, r + 1))  # (N, C, *S), a view
            col2im_into(dst, patches, stride, tuple(p[0] for p in padding), dilation)
            return np.ascontiguousarray(dst)
        dcols = dcols_t.transpose(0, 2, 1)
    else:
        dcols = scratch("dcols", (g, wmat.shape[2], m), np.result_type(dy_mat, wmat))
        np.matmul(wmat.transpose(0, 2, 1), dy_mat, out=dcols)  # one GEMM: (G, C/G·∏k, N·∏out)
    patches = _to_nc_first(dcols.reshape(c, *kernel, n, *outs), r)
    dst = np.zeros(x_shape, dtype=dcols.dtype) if into is None else into
    return col2im_into(dst, patches, stride, tuple(p[0] for p in padding), dilation)


def _dx_gather(dy: Array, w: Array, x_shape: tuple[int, ...], padding: Pads, dilation: Sizes, groups: int) -> Array:
    """∇x (N, C, *S) of a stride-1 conv: ∇y (N, Co, *out) in a zero border of d(k−1), correlated with the flipped kernel.

    Input position i (i + lo in the padded input) received ∇y[i + lo − d·t] through tap t, so
    with ∇y shifted by d(k−1) − lo into the bordered buffer, ∇x[i] is the correlation of the
    buffer at i with the kernel reversed in every axis: a forward conv of ∇y, one GEMM.
    """
    n, c, *sizes = x_shape
    co, cg, *kernel = w.shape
    reach = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
    buf = scratch("border", (n, co, *(s + q for s, q in zip(sizes, reach))), dy.dtype)
    buf.fill(0)
    src, dst = [], []
    for o, q, lo, size in zip(dy.shape[2:], reach, (p[0] for p in padding), sizes):
        first, last = max(0, lo - q), min(o, size + lo)  # the ∇y entries that reach some input
        src.append(slice(first, last))
        dst.append(slice(first + q - lo, last + q - lo))
    buf[(slice(None), slice(None), *dst)] = dy[(slice(None), slice(None), *src)]
    rot = flipped_transposed(w, groups).reshape(groups, cg, (co // groups) * math.prod(kernel))  # one small copy
    dx = np.empty(x_shape, dtype=rot.dtype)
    geometry = (tuple(kernel), (1,) * len(kernel), tuple(dilation), groups)
    if n * co * math.prod(kernel) * math.prod(sizes) * buf.itemsize > WHOLE_MAX and _rows_pay(geometry, n, tuple(sizes)):
        _rows_forward(buf, rot, geometry, dx)
        return dx
    for a, b in _slabs(sizes[0], co * math.prod(kernel) * n * math.prod(sizes[1:]) * buf.itemsize, n * math.prod(sizes[1:])):
        cols, _ = im2col(buf[:, :, a : b + reach[0]], tuple(kernel), (1,) * len(kernel), dilation, groups, reuse="cols")
        _slab_product(rot, cols, dx, a, b)  # one GEMM a slab
    return dx


WHOLE_MAX = 1 << 23  # bytes of columns built at once; a larger matrix is fresh memory (page faults) on every call
SLAB = 1 << 22  # bytes of one slab's columns when they are split: a buffer the allocator reuses, near the caches
SLAB_COLS = 1024  # fewest GEMM columns in a slab (as rows allow): narrower products run well below BLAS speed


def _slabs(rows: int, row_bytes: int, row_cols: int = SLAB_COLS) -> list[tuple[int, int]]:
    """[a, b) ranges of the first spatial axis: all of it when its columns fit WHOLE_MAX, else SLAB-sized
    pieces of at least SLAB_COLS GEMM columns (row_cols columns a row)."""
    step = rows if rows * row_bytes <= WHOLE_MAX else max(1, SLAB // row_bytes, -(-SLAB_COLS // row_cols))
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


# ---------------------------------------------------------------------------------------------
# row columns: the first axis's taps read from overlapping rows instead of copied
# ---------------------------------------------------------------------------------------------

ROWS_MAX = 1 << 25  # bytes of one slab's row columns (at most SCRATCH_MAX: a reused buffer, not fresh pages)
ROWS_COLS = 512  # fewest GEMM columns one sample's output row must have for row columns


def _rows_pay(geometry: tuple[Sizes, Sizes, Sizes, int], n: int, outs: Sizes) -> bool:
    """True when columns without the first axis's taps save copying: its taps overlap (k > s, no dilation) and an output row is a wide GEMM.

    The row's width counts one sample: measured, narrower rows lose to im2col, and a batch's
    rows gain nothing (its products and ∇y need reordering copies that cost what the copy saves).
    """
    kernel, stride, dilation, _ = geometry
    return len(kernel) > 1 and dilation[0] == 1 and kernel[0] > stride[0] and outs[0] > 1 and math.prod(outs[1:]) >= ROWS_COLS


def row_im2col(xp: Array, geometry: tuple[Sizes, Sizes, Sizes, int], lo: int, hi: int) -> Array:
    """(G, hi−lo, k₀·C/G·∏k', N·∏out') view: output row i's columns along the first axis, with the (k₀, C, *k') K axis.

    im2col over the other axes alone, of the padded rows [lo·s₀, (hi−1)·s₀ + k₀), is copied into
    one (G, rows, C/G·∏k', N·∏out') buffer. Output row i reads its k₀ consecutive padded rows
    there: adjacent rows are adjacent blocks of K, so the view over them is one strided matrix
    per row and the first axis's taps need no copy (a k₀·s₀⁻¹-fold smaller copy than im2col's).
    """
    kernel, stride, dilation, groups = geometry
    r = len(kernel)
    part = xp[:, :, lo * stride[0] : (hi - 1) * stride[0] + kernel[0]]
    view = windows(part, (1, *kernel[1:]), (1, *stride[1:]), (1, *dilation[1:]))[:, :, 0]  # (N, C, *k', rows, *out')
    n, c, *_ = view.shape
    rows, outs = view.shape[r + 1], view.shape[r + 2 :]
    view = view.reshape(n, groups, c // groups, *view.shape[2:])  # (N, G, C/G, *k', rows, *out')
    buf = scratch("rows", (groups, rows, c // groups, *kernel[1:], n, *outs), xp.dtype)
    np.copyto(buf, view.transpose(1, r + 2, 2, *range(3, r + 2), 0, *range(r + 3, 2 * r + 2)))
    flat = buf.reshape(groups, rows, -1, n * math.prod(outs))
    g, _, k, m = flat.shape
    return as_strided(flat, (g, hi - lo, kernel[0] * k, m), (flat.strides[0], stride[0] * flat.strides[1], *flat.strides[2:]), writeable=False)


def _first_tap_major(wmat: Array, kernel: Sizes) -> Array:
    """(G, Co/G, C/G·∏k) -> (G, Co/G, k₀·C/G·∏k'): the K axis in row columns' order (a copy)."""
    g, o, k = wmat.shape
    return np.ascontiguousarray(wmat.reshape(g, o, -1, kernel[0], math.prod(kernel[1:])).swapaxes(2, 3)).reshape(g, o, k)


def _from_first_tap_major(dw: Array, kernel: Sizes) -> Array:
    """(G, Co/G, k₀·C/G·∏k') -> (G, Co/G, C/G·∏k): ∇W back in the weight's order (a copy)."""
    g, o, k = dw.shape
    return np.ascontiguousarray(dw.reshape(g, o, kernel[0], -1, math.prod(kernel[1:])).swapaxes(2, 3)).reshape(g, o, k)


def _rows_forward(xp: Array, wmat: Array, geometry: tuple[Sizes, Sizes, Sizes, int], y: Array) -> None:
    """y (N, Co, *out) = wmat (G, Co/G, C/G·∏k) · columns of xp (N, C, *padded), built as row columns a slab at a time."""
    n, co, *outs = y.shape
    groups = geometry[3]
    wk = _first_tap_major(wmat, geometry[0])[:, None]  # (G, 1, Co/G, K): one product per output row
    m = n * math.prod(outs[1:])
    rows = y.reshape(n, groups, co // groups, outs[0], m // n)
    for lo, hi in _row_slabs(xp, geometry, n, tuple(outs)):
        cols = row_im2col(xp, geometry, lo, hi)
        if n == 1:
            # each output row is a (Co/G, ∏out') block of y with a plain row stride: written in place
            np.matmul(wk, cols, out=rows[0, :, :, lo:hi].transpose(0, 2, 1, 3))
            continue
        part = np.matmul(wk, cols, out=scratch("product", (groups, hi - lo, co // groups, m), y.dtype))
        rows[:, :, :, lo:hi] = part.reshape(groups, hi - lo, co // groups, n, m // n).transpose(3, 0, 2, 1, 4)


def _rows_dw(dy: Array, xp: Array, geometry: tuple[Sizes, Sizes, Sizes, int], dw: Array) -> None:
    """dw (G, Co/G, C/G·∏k) += ∇y (N, Co, *out) · row columnsᵀ of xp (N, C, *padded), one product per output row, summed."""
    n, co, *outs = dy.shape
    kernel, _, _, groups = geometry
    m = n * math.prod(outs[1:])
    # ∇y as (G, rows, Co/G, N·∏out'): output row i's (Co/G, N·∏out') block, a view for N = 1
    dy_rows = dy.reshape(n, groups, co // groups, outs[0], m // n).transpose(1, 3, 2, 0, 4)
    if n > 1:
        dy_rows = np.ascontiguousarray(dy_rows)
    dy_rows = dy_rows.reshape(groups, outs[0], co // groups, m)
    acc = np.zeros(dw.shape, dtype=dw.dtype)
    for lo, hi in _row_slabs(xp, geometry, n, tuple(outs)):
        cols = row_im2col(xp, geometry, lo, hi)
        part = np.matmul(dy_rows[:, lo:hi], cols.transpose(0, 1, 3, 2), out=scratch("product", (groups, hi - lo, co // groups, cols.shape[2]), dw.dtype))
        acc += part.sum(axis=1)
    dw += _from_first_tap_major(acc, kernel)


def _row_slabs(xp: Array, geometry: tuple[Sizes, Sizes, Sizes, int], n: int, outs: Sizes) -> list[tuple[int, int]]:
    """[a, b) ranges of output rows whose row columns (a buffer of (b−a−1)·s₀ + k₀ padded rows) fit ROWS_MAX."""
    kernel, stride = geometry[:2]
    row = xp.shape[1] * math.prod(kernel[1:]) * n * math.prod(outs[1:]) * xp.itemsize
    step = max(1, (ROWS_MAX // row - kernel[0]) // stride[0] + 1)
    return [(a, min(outs[0], a + step)) for a in range(0, outs[0], step)]


# ---------------------------------------------------------------------------------------------
# the seed's ∇x: full correlation of the zero-inserted ∇y with the flipped, channel-swapped kernel
# ---------------------------------------------------------------------------------------------


def flipped_transposed(w: Array, groups: int) -> Array:
    """(C, Co/G, *k) from w (Co, C/G, *k): each kernel rotated 180° in every axis, in/out channels swapped per group."""
    co, cg, *kernel = w.shape
    swapped = w.reshape(groups, co // groups, cg, *kernel).swapaxes(1, 2).reshape(groups * cg, co // groups, *kernel)
    return swapped[(slice(None), slice(None), *([slice(None, None, -1)] * len(kernel)))]


def zero_insert(dy: Array, stride: Sizes) -> Array:
    """(N, C, *((out−1)·s+1)): ∇y with s−1 zeros between its entries (the positions a strided forward skipped)."""
    n, c, *outs = dy.shape
    out = np.zeros((n, c, *((o - 1) * s + 1 for o, s in zip(outs, stride))), dtype=dy.dtype)
    out[(slice(None), slice(None), *(slice(None, None, s) for s in stride))] = dy
    return out


def conv_dx_full_correlation(dy: Array, w: Array, x_shape: tuple[int, ...], stride: Sizes, padding: Pads, dilation: Sizes, groups: int) -> Array:
    """∇x (N, C, *S) the seed's way, from ∇y (N, Co, *out) and w (Co, C/G, *k).

    Written independently of the im2col path (a direct sum over kernel taps), so that verify
    compares two different computations: zero-insert s−1 zeros between ∇y's entries, pad by the
    dilated k−1 (and on the far side up to the padded input's end, where the forward's last
    window stopped short), correlate with rot180(w) with in/out channels swapped, crop the padding.
    """
    n, c, *sizes = x_shape
    co, cg, *kernel = w.shape
    padded = [s + lo + hi for s, (lo, hi) in zip(sizes, padding)]
    dz = zero_insert(dy, stride)
    # far side: d(k−1) plus the rows the last window never reached
    full = pad(dz, tuple((d * (k - 1), p - z) for d, k, p, z in zip(dilation, kernel, padded, dz.shape[2:])))
    rot = flipped_transposed(w, groups)  # (C, Co/G, *k)
    dxp = np.zeros((n, c, *padded), dtype=np.result_type(dy, w))
    cog = co // groups
    for g in range(groups):
        outs, ins = slice(g * cg, (g + 1) * cg), slice(g * cog, (g + 1) * cog)
        for taps in itertools.product(*(range(k) for k in kernel)):
            shifted = full[(slice(None), ins, *(slice(t * d, t * d + p) for t, d, p in zip(taps, dilation, padded)))]
            dxp[:, outs] += np.einsum("no...,co->nc...", shifted, rot[(outs, slice(None), *taps)])
    crop = tuple(slice(lo, lo + s) for s, (lo, _) in zip(sizes, padding))
    return np.ascontiguousarray(dxp[(slice(None), slice(None), *crop)])


# ---------------------------------------------------------------------------------------------
# transposed convolution: the adjoint of conv (forward = conv's ∇x, ∇x = conv's forward)
# ---------------------------------------------------------------------------------------------


def conv_transpose_forward(
    x: Array, w: Array, b: Array | None, stride: Sizes, padding: Sizes, output_padding: Sizes, dilation: Sizes, groups: int
) -> tuple[Array, Cache]:
    """y (N, Cout, *out) from x (N, Cin, *S), w (Cin, Cout/G, *k) as PyTorch, b (Cout,) or None.

    The transposed conv of w is the adjoint of the conv of w from Cout channels to Cin: its
    forward is that conv's ∇x (x in ∇y's place), its ∇x that conv's forward of ∇y, and its ∇w
    that conv's ∇w with x in ∇y's place, so it runs on the conv's kernels.
    """
    n, cin, *sizes = x.shape
    _, cog, *kernel = w.shape
    r = len(kernel)
    if groups < 1 or cin % groups or w.shape[0] != cin or x.ndim != r + 2:
        raise ValueError(f"weight {tuple(w.shape)} does not fit {cin} input channels in groups={groups}")
    stride, padding, output_padding, dilation = tuple(stride), tuple(padding), tuple(output_padding), tuple(dilation)
    cout = cog * groups
    # the full output, cropped p at both ends (output_padding only lengthens the far end); the
    # conv's windows start at -p and only the near padding places them
    outs = tuple(conv_transpose_out(*a) for a in zip(sizes, kernel, stride, padding, dilation, output_padding))
    if min(outs) < 1:
        raise ValueError(f"padding {padding} leaves no output ({_x(outs)})")
    y = conv_input_grad(x, w, (n, cout, *outs), stride, tuple((p, p) for p in padding), dilation, groups)
    if b is not None:
        y += b.reshape(1, cout, *([1] * r))
    return y, (x, w, stride, padding, dilation, groups, b is not None)


def conv_transpose_backward(dy: Array, cache: Cache) -> tuple[Array, Array, Array | None]:
    """(∇x (N, Cin, *S), ∇w (Cin, Cout/G, *k), ∇b (Cout,) or None) from ∇y (N, Cout, *out)."""
    x, w, stride, padding, dilation, groups, has_bias = cache
    sizes, kernel = x.shape[2:], w.shape[2:]
    # the conv's S windows of ∇y, exactly: an output_padding tail that no window reaches (possible
    # when output_padding >= stride) is cut off, and a ∇y short of the last window's reach is
    # padded at the far end up to it
    reach = tuple((s - 1) * st + d * (k - 1) + 1 - p for s, st, d, k, p in zip(sizes, stride, dilation, kernel, padding))
    far = tuple(max(0, r - o) for r, o in zip(reach, dy.shape[2:]))
    cut = dy[(slice(None), slice(None), *(slice(0, max(0, min(o, r))) for o, r in zip(dy.shape[2:], reach)))]
    dx, conv_cache = conv_forward(cut, w, None, stride, tuple((p, f) for p, f in zip(padding, far)), dilation, groups)
    _, dw, _ = conv_backward(x, conv_cache, input_grad=False)
    db = dy.sum(axis=(0, *range(2, dy.ndim))) if has_bias else None
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# K_conv: the convolution as a matrix (the seed's figure)
# ---------------------------------------------------------------------------------------------


def kconv_index(in_sizes: Sizes, k_sizes: Sizes, stride: Sizes, padding: Pads, dilation: Sizes) -> Array:
    """(∏out, ∏in) int array: 0 where K_conv is zero, j where it is k_j (1-based, row-major kernel index).

    Rows are output positions, columns input positions, both row-major; a tap that lands in the
    zero padding multiplies nothing, so it has no column. For a 3x3 input and a 2x2 kernel
    (stride 1, no padding) the first row is [1, 2, 0, 3, 4, 0, 0, 0, 0].
    """
    r = len(in_sizes)
    outs = tuple(conv_out(n, k, s, lo + hi, d) for n, k, s, (lo, hi), d in zip(in_sizes, k_sizes, stride, padding, dilation))
    if min(outs) < 1:
        raise ValueError(f"kernel {_x(k_sizes)} exceeds the padded input: no output")
    # input position of every (output position, tap) per axis, broadcast over (*out, *k)
    grid = np.ix_(*(np.arange(o) for o in outs), *(np.arange(k) for k in k_sizes))
    pos = np.broadcast_arrays(*(grid[a] * stride[a] + grid[r + a] * dilation[a] - padding[a][0] for a in range(r)))
    shape = pos[0].shape
    row = np.broadcast_to(sum(grid[a] * math.prod(outs[a + 1 :]) for a in range(r)), shape)
    tap = np.broadcast_to(1 + sum(grid[r + a] * math.prod(k_sizes[a + 1 :]) for a in range(r)), shape)
    col = sum(pos[a] * math.prod(in_sizes[a + 1 :]) for a in range(r))
    inside = np.logical_and.reduce([(p >= 0) & (p < n) for p, n in zip(pos, in_sizes)])
    index = np.zeros((math.prod(outs), math.prod(in_sizes)), dtype=np.int64)
    # distinct taps of one window hit distinct inputs (dilation >= 1), so no entry is written twice
    index[row[inside], col[inside]] = tap[inside]
    return index


def kconv_matrix(k: Array, in_sizes: Sizes, stride: Sizes, padding: Pads, dilation: Sizes) -> Array:
    """K_conv (∏out, ∏in) of a single-channel kernel k (*k): vec(x ⋆ k) = K_conv · vec(x)."""
    k = np.asarray(k)
    index = kconv_index(in_sizes, k.shape, stride, padding, dilation)
    values = np.concatenate([np.zeros(1, dtype=k.dtype), k.ravel()])  # index 0 -> 0
    return values[index]


def kconv_full(w: Array, x_shape: tuple[int, ...], stride: Sizes, padding: Pads, dilation: Sizes, groups: int) -> Array:
    """K_conv of a whole one-sample conv layer: (Co·∏out, C·∏S), a K_conv block per (out, in) channel pair of a group."""
    co, cg, *kernel = w.shape
    c, *sizes = x_shape[1:]
    index = kconv_index(tuple(sizes), tuple(kernel), stride, padding, dilation)
    rows, cols = index.shape
    taps = np.concatenate([np.zeros((co, cg, 1), dtype=w.dtype), w.reshape(co, cg, math.prod(kernel))], axis=2)
    blocks = taps[:, :, index]  # (Co, C/G, ∏out, ∏S)
    full = np.zeros((co, rows, groups, cg, cols), dtype=w.dtype)  # zero outside each group's block
    per_group = co // groups
    for g in range(groups):
        o = slice(g * per_group, (g + 1) * per_group)
        full[o, :, g] = blocks[o].transpose(0, 2, 1, 3)
    return full.reshape(co * rows, c * cols)


def kconv_adjoint(w: Array, x_shape: tuple[int, ...], y_shape: tuple[int, ...], stride: Sizes, padding: Pads, dilation: Sizes, groups: int) -> Array:
    """K_conv (C_in·∏S, C_out·∏S_out) of the conv whose adjoint is the transposed conv of weight w
    (C_in, C_out/groups, *k) from x_shape to y_shape: y = K_convᵀ · vec(x) for one sample.

    That conv, run on y, fits more outputs than x has positions when output_padding reaches the
    stride (PyTorch allows it below the dilation); those rows stand for no input and are dropped.
    """
    k = kconv_full(w, y_shape, stride, padding, dilation, groups)
    outs = [conv_out(n, kk, s, lo + hi, d) for n, kk, s, (lo, hi), d in zip(y_shape[2:], w.shape[2:], stride, padding, dilation)]
    kept = (slice(None), *(slice(0, n) for n in x_shape[2:]))
    return k.reshape(x_shape[1], *outs, -1)[kept].reshape(-1, k.shape[1])
