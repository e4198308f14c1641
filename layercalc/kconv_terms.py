"""A convolution's gradients and its transpose written out term by term, as index arithmetic.

One spatial axis of a convolution (cross-correlation) with input length L, kernel k, stride s,
zero padding p and dilation d computes, for each output i,

    y_i = Σ_t k_t · x_u   with   u = i·s + t·d − p   (terms with u outside [0, L) are padding: gone)

so each input u receives, in the backward pass, every (t, i) with i·s + t·d − p = u:

    ∂L/∂x_u = Σ_t k_t · ∂L/∂y_i   with   i = (u + p − t·d) / s   when that is an integer in [0, Ho).

That is K_convᵀ read row by row. The same sum is the full correlation of ∇y, spread (s − 1 zeros
between its entries) and zero-padded by d·(k−1) − p before it, with the flipped, dilated kernel
sliding one step per input. A transposed convolution's forward is that same sum (x in place of
∇y), and its backward is the ordinary strided correlation. A 2-D convolution is the product of
two such axes: every term pairs one term of each axis. Pure integer arithmetic, no arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

Index = tuple[int, ...]  # a position, one int per axis (1 or 2 axes)
Term = tuple[Index, Index]  # (kernel tap, operand position)

ZERO = "0"


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a convolution: input length, kernel, stride, padding, dilation, and how
    many of its outputs are used (None: all that fit)."""

    size: int
    kernel: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    # A transposed conv is the adjoint of this conv on its own output; an output_padding at or past
    # the stride (allowed below the dilation) lets that conv fit more outputs than the transposed
    # conv has inputs, and the extra ones stand for nothing.
    outputs: int | None = None

    @property
    def reach(self) -> int:
        """Span of the dilated kernel: d·(k − 1) + 1 input positions."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def out(self) -> int:
        """Number of outputs: ⌊(L + 2p − reach) / s⌋ + 1 (0 or less: the kernel does not fit), or those used."""
        if self.outputs is not None:
            return self.outputs
        return (self.size + 2 * self.pad - self.reach) // self.stride + 1

    def gather(self, i: int) -> list[tuple[int, int]]:
        """(tap t, input u) of output i: u = i·s + t·d − p, padding taps dropped."""
        taps = ((t, i * self.stride + t * self.dilation - self.pad) for t in range(self.kernel))
        return [(t, u) for t, u in taps if 0 <= u < self.size]

    def scatter(self, u: int) -> list[tuple[int, int]]:
        """(tap t, output i) that input u feeds: i·s + t·d − p = u, i in [0, out)."""
        terms = []
        for t in range(self.kernel):
            i, rest = divmod(u + self.pad - t * self.dilation, self.stride)
            if rest == 0 and 0 <= i < self.out:
                terms.append((t, i))
        return terms


Axes = tuple[Axis, ...]


def terms_of(axes: Axes, target: Index, adjoint: bool) -> list[Term]:
    """Every (tap, operand) of one target: a product of per-axis terms, taps in row-major order."""
    per_axis = [a.scatter(n) if adjoint else a.gather(n) for a, n in zip(axes, target)]
    return [(tuple(t for t, _ in pick), tuple(n for _, n in pick)) for pick in product(*per_axis)]


# ---------------------------------------------------------------------------------------------
# names: 1-D indices as subscripts (x0, k2, ∂L/∂y1), 2-D as [row,col] (x[0,1], k[1,0])
# ---------------------------------------------------------------------------------------------


def name(symbol: str, index: Index) -> str:
    """'x', (3,) -> 'x3'; 'k', (0, 1) -> 'k[0,1]'."""
    if len(index) == 1:
        return f"{symbol}{index[0]}"
    return f"{symbol}[{','.join(str(i) for i in index)}]"


def expression(terms: list[Term], operand: str) -> str:
    """'k0·∂L/∂y1 + k1·∂L/∂y0', or '0' when nothing reaches this position."""
    return " + ".join(f"{name('k', t)}·{name(operand, n)}" for t, n in terms) or ZERO


# ---------------------------------------------------------------------------------------------
# the three views: what is summed, over which positions, and how the lecture lays it out
# ---------------------------------------------------------------------------------------------

# mode -> (target symbol, operand symbol, adjoint?): backward = conv ∇x; transposed = the
# transposed conv's forward (y = K_convᵀ x); transposed-backward = its ∇x (= K_conv · ∇y)
MODES: dict[str, tuple[str, str, bool]] = {
    "backward": ("∂L/∂x", "∂L/∂y", True),
    "transposed": ("y", "x", True),
    "transposed-backward": ("∂L/∂x", "∂L/∂y", False),
}


def positions(axes: Axes, adjoint: bool) -> list[Index]:
    """Target positions, row-major: the conv's inputs (adjoint) or outputs (gather)."""
    return list(product(*(range(a.size if adjoint else a.out) for a in axes)))


def all_terms(axes: Axes, mode: str) -> list[dict[str, Any]]:
    """One entry per target position: {"at", "name", "terms": [{"k", "at"}], "text"}."""
    target, operand, adjoint = MODES[mode]
    rows = []
    for at in positions(axes, adjoint):
        terms = terms_of(axes, at, adjoint)
        rows.append({
            "at": list(at), "name": name(target, at),
            "terms": [{"k": list(t), operand_key(operand): list(n)} for t, n in terms],
            "text": f"{name(target, at)} = {expression(terms, operand)}",
        })
    return rows


def operand_key(operand: str) -> str:
    """The JSON key of a term's operand position: 'dy' for ∂L/∂y, 'x' for x."""
    return "dy" if operand == "∂L/∂y" else "x"


def _row_axis(a: Axis, adjoint: bool) -> tuple[int, list[int | None], int]:
    """One axis of the laid-out operand: (length, operand index or None per cell, zeros before).

    Adjoint (full correlation): d·(k−1) − p zeros, then the operand with s − 1 zeros between its
    entries, then zeros up to L + d·(k−1) cells; entries that land outside that span reach no
    input and are cut. Gather (plain correlation): the operand padded by p, up to the last window.
    """
    if adjoint:
        length, before, count, step = a.size + a.dilation * (a.kernel - 1), a.dilation * (a.kernel - 1) - a.pad, a.out, a.stride
    else:
        length, before, count, step = (a.out - 1) * a.stride + a.reach, a.pad, a.size, 1
    cells: list[int | None] = [None] * length
    for n in range(count):
        c = before + n * step
        if 0 <= c < length:
            cells[c] = n
    return length, cells, before


def _kernel_axis(a: Axis, flipped: bool) -> list[int | None]:
    """The dilated kernel along one axis: tap per cell, None in the d − 1 gaps; reversed if flipped."""
    cells: list[int | None] = [None] * a.reach
    for t in range(a.kernel):
        cells[t * a.dilation] = t
    return cells[::-1] if flipped else cells


def layout(axes: Axes, mode: str) -> dict[str, Any]:
    """The lecture's picture: the laid-out operand grid, the (flipped) kernel grid, each target's window.

    {"operand": rows of names or '0', "kernel": rows of tap names or '0', "flipped", "zeros_before",
    "zeros_between", "windows": [{"name", "at": window's first cell}]}; target n's value is
    Σ kernel[m] · operand[at + m] over the kernel's cells m.
    """
    target, operand, adjoint = MODES[mode]
    row_axes = [_row_axis(a, adjoint) for a in axes]
    kern_axes = [_kernel_axis(a, flipped=adjoint) for a in axes]

    def cell(symbol: str, parts: tuple[int | None, ...]) -> str:
        return ZERO if any(p is None for p in parts) else name(symbol, parts)  # type: ignore[arg-type]

    operand_grid = _grid([r[1] for r in row_axes], lambda parts: cell(operand, parts))
    kernel_grid = _grid(kern_axes, lambda parts: cell("k", parts))
    windows = []
    for at in positions(axes, adjoint):
        start = at if adjoint else tuple(n * a.stride for n, a in zip(at, axes))
        windows.append({"name": name(target, at), "at": list(start)})
    return {
        "operand": operand_grid, "kernel": kernel_grid, "flipped": adjoint,
        "zeros_before": [r[2] for r in row_axes],
        "zeros_between": [a.stride - 1 if adjoint else 0 for a in axes],
        "windows": windows,
    }


def _grid(axes_cells: list[list[int | None]], label: Any) -> list[list[str]]:
    """Rows of labels of a 1-D (one row) or 2-D grid built from per-axis cell indices."""
    if len(axes_cells) == 1:
        return [[label((c,)) for c in axes_cells[0]]]
    return [[label((r, c)) for c in axes_cells[1]] for r in axes_cells[0]]


# ---------------------------------------------------------------------------------------------
# the sliding window, frame by frame, for the drawing
# ---------------------------------------------------------------------------------------------


def frames(axes: Axes, transposed: bool, output_padding: Index | None = None) -> dict[str, Any]:
    """Grids and one frame per moving position, in the conv's index arithmetic.

    Convolution: the source is the padded input (padding p shaded), one frame per output; the
    window covers padded cells i·s + t·d. Transposed convolution: the source is its input, one
    frame per input i, whose kernel footprint lands on the full output at i·s + t·d, of which the
    first p and last p cells (the padding) are cropped; output_padding adds cells at the far end.
    Cells are (row, col) with row 0 in 1-D.
    """
    flat = len(axes) == 1
    ax = ((Axis(1, 1),) + axes) if flat else axes
    op = (0, *(output_padding or (0,))) if flat else tuple(output_padding or (0, 0))
    taps = list(product(range(ax[0].kernel), range(ax[1].kernel)))

    def tap_name(t: tuple[int, int]) -> str:
        return name("k", (t[1],) if flat else t)

    # the conv's outputs: what a conv's frames produce, and what a transposed conv's frames read
    outs = {"rows": ax[0].out, "cols": ax[1].out, "border": [0, 0]}
    if not transposed:
        source = {"rows": ax[0].size + 2 * ax[0].pad, "cols": ax[1].size + 2 * ax[1].pad, "border": [ax[0].pad, ax[1].pad]}
        target = outs
    else:
        full = [(a.out - 1) * a.stride + a.reach + o for a, o in zip(ax, op)]
        source, target = outs, {"rows": full[0], "cols": full[1], "border": [ax[0].pad, ax[1].pad]}
    result = []
    for i, j in product(range(ax[0].out), range(ax[1].out)):
        foot = [
            {"cell": [i * ax[0].stride + t * ax[0].dilation, j * ax[1].stride + q * ax[1].dilation], "k": tap_name((t, q))}
            for t, q in taps
        ]
        if transposed:
            result.append({"source": [[i, j]], "target": foot, "name": name("x", (j,) if flat else (i, j))})
        else:
            result.append({"source": foot, "target": [[i, j]], "name": name("y", (j,) if flat else (i, j))})
    return {"source": source, "target": target, "transposed": transposed, "frames": result}
