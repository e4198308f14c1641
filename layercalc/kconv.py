"""Convolution as a matrix: K_conv of a small single-channel conv, symbolically and checked.

vec(x ⋆ k) = K_conv · vec(x), so ∇x = K_convᵀ · vec(∇y), just as Linear's ∇x = Wᵀ∇z.
Rows are output positions y1.., columns input positions x1.. (row-major); an entry is the
kernel tap k1.. (row-major) that multiplies that input for that output, or 0. One size each
(`--input 5 --kernel 3`) is a 1-D convolution, computed as the 2-D one with height 1, whose
positions count from 0 (x0, k0, y0) as the term-by-term view does.
A transposed convolution is y = K_convᵀ · vec(x) of the conv that maps its output back to its
input (same kernel, stride, padding, dilation). The term-by-term views are in kconv_terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .config import split_sizes
from .errors import ConfigError, UsageError
from .kconv_terms import Axis, all_terms, frames, layout, positions, terms_of
from .layers.base import Layer
from .layers.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d

Pair = tuple[int, int]
Sizes = tuple[int, ...]  # one entry per spatial axis (1 or 2)

# What a reader can use, and so what kconv builds: K_conv of at most 2^20 entries (the 1,024 x
# 1,024 K_conv of a 32x32 input with padding 1, whose every entry the machine formats write in
# well under a second; a matrix of 10^8 entries took 780 MB only to say it was too large); the
# padded grid the views lay out, and the window's steps (positions x kernel taps) the terms and
# frames walk, are held to the same count. Past a limit kconv refuses in one line naming it.
MAX_ENTRIES = 2**20
# --draw: rectangles in the SVG (grid cells, and each frame's footprint and output cells; a
# --frames strip redraws the grids in every frame). 2^17 is about 13 MB of SVG, 130 times the
# manual's 900-frame animation; more is no picture a browser or a printer shows usably.
MAX_DRAWN_CELLS = 2**17

# kconv's convolution is the config's layer of that type, so both read sizes and refuse alike
_LAYERS: dict[tuple[bool, int], type[Layer]] = {
    (False, 1): Conv1d, (False, 2): Conv2d, (True, 1): ConvTranspose1d, (True, 2): ConvTranspose2d,
}
# the layer's argument names in its refusals, as kconv's options read
_OPTION_WORDS = {"kernel_size": "kernel", "output_padding": "--output-padding"}


def parse_sizes(text: str, what: str, low: int, rank: int | None = None) -> Sizes:
    """'3' -> (3,), '3x5' -> (3, 5); each at least `low`; rank 1 takes one number, rank 2 one or two."""
    parts = split_sizes(text)
    values = tuple(v for v in parts if isinstance(v, int))
    allowed = (1,) if rank == 1 else (1, 2)
    if len(values) != len(parts) or len(values) not in allowed or any(v < low for v in values):
        shape = "for a 1-D input" if rank == 1 else "or HxW like 3x3"
        raise UsageError(f"{what} must be an integer >= {low} {shape}, got {text!r}")
    return values * (rank or 1) if len(values) == 1 and rank else values


def fmt(sizes: Sizes) -> str:
    """(5,) -> '5', (3, 4) -> '3x4'."""
    return "x".join(str(s) for s in sizes)


@dataclass(frozen=True)
class Geometry:
    """A single-channel convolution (or transposed convolution) of 1 or 2 spatial axes."""

    input: Sizes
    kernel: Sizes
    stride: Sizes
    padding: Sizes
    dilation: Sizes
    transposed: bool = False
    output_padding: Sizes = ()

    @property
    def rank(self) -> int:
        """1 or 2 spatial axes."""
        return len(self.input)

    @cached_property
    def layer(self) -> Layer:
        """The single-channel, bias-free conv (or transposed conv) layer of this geometry."""
        extra = {"output_padding": self.output_padding or (0,) * self.rank} if self.transposed else {}
        return _LAYERS[self.transposed, self.rank](
            out_channels=1, kernel_size=self.kernel, stride=self.stride, padding=self.padding,
            dilation=self.dilation, groups=1, bias=False, in_channels=None, **extra,
        )

    @cached_property
    def output(self) -> Sizes:
        """The layer's output size by its own shape rule; a UsageError with its refusal if it has none."""
        try:
            return self.layer.output_shape((1, 1, *self.input))[2:]
        except ConfigError as exc:
            words = exc.message.split(" ", 1)
            raise UsageError(" ".join([_OPTION_WORDS.get(words[0], words[0]), *words[1:]])) from None

    @property
    def axes(self) -> tuple[Axis, ...]:
        """The conv's axes; for a transposed conv, those of the conv that maps its output back to its input."""
        geometry = zip(self.kernel, self.stride, self.padding, self.dilation)
        if not self.transposed:
            return tuple(Axis(n, k, s, p, d) for n, (k, s, p, d) in zip(self.input, geometry))
        return tuple(Axis(m, k, s, p, d, outputs=n) for m, n, (k, s, p, d) in zip(self.output, self.input, geometry))

    def lifted(self) -> tuple[Pair, Pair, Pair, tuple[Pair, Pair], Pair]:
        """The conv's (input, kernel, stride, pads, dilation) as 2-D pairs (height 1 in 1-D)."""
        axes = self.axes if self.rank == 2 else (Axis(1, 1),) + self.axes
        return (
            (axes[0].size, axes[1].size), (axes[0].kernel, axes[1].kernel), (axes[0].stride, axes[1].stride),
            ((axes[0].pad, axes[0].pad), (axes[1].pad, axes[1].pad)), (axes[0].dilation, axes[1].dilation),
        )

    def describe(self) -> dict[str, Any]:
        """The geometry as JSON-ready lists."""
        data: dict[str, Any] = {
            "rank": self.rank, "transposed": self.transposed, "input": list(self.input), "kernel": list(self.kernel),
            "stride": list(self.stride), "padding": list(self.padding), "dilation": list(self.dilation),
        }
        if self.transposed:
            data["output_padding"] = list(self.output_padding or (0,) * self.rank)
        data["output"] = list(self.output)
        return data


def geometry(input: str, kernel: str, stride: str = "1", padding: str = "0", dilation: str = "1",
             transposed: bool = False, output_padding: str = "0") -> Geometry:
    """Parse the command-line sizes (one number = 1-D) and check that the convolution exists."""
    shape = parse_sizes(input, "--input", 1)
    rank = len(shape)
    geo = Geometry(
        shape, parse_sizes(kernel, "--kernel", 1, rank), parse_sizes(stride, "--stride", 1, rank),
        parse_sizes(padding, "--padding", 0, rank), parse_sizes(dilation, "--dilation", 1, rank), transposed,
        parse_sizes(output_padding, "--output-padding", 0, rank) if transposed else (),
    )
    if not transposed and any(v != 0 for v in split_sizes(output_padding)):
        raise UsageError("--output-padding goes with --transposed")
    return _within_limits(geo)


def _prod(values: Any) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def shape(geo: Geometry) -> Pair:
    """(rows, columns) of the printed matrix, K_conv or K_convᵀ: the layer's (outputs, inputs).

    Read from the layer's shape rule, so a convolution it cannot build is refused here, in one line.
    """
    return _prod(geo.output), _prod(geo.input)


def _within_limits(geo: Geometry) -> Geometry:
    """The geometry, or a UsageError naming the limit (MAX_ENTRIES) that its views would pass.

    Counted in integers from the sizes alone, before anything is built: an --input of 10^20 is
    refused as quickly as one of 10^3.
    """
    h, w = shape(geo)
    limit = f"kconv shows at most {MAX_ENTRIES:,} (the 1,024 x 1,024 K_conv of a 32x32 input)"
    if h * w > MAX_ENTRIES:
        matrix = "K_convᵀ" if geo.transposed else "K_conv"
        raise UsageError(f"{matrix} would be {h:,} x {w:,} ({h * w:,} entries); {limit}; a smaller --input shows the same pattern")
    grid = [a.size + 2 * a.pad + a.dilation * (a.kernel - 1) for a in geo.axes]
    if _prod(grid) > MAX_ENTRIES:
        raise UsageError(f"the padded, dilated grid {fmt(tuple(grid))} has {_prod(grid):,} cells; {limit}")
    steps = _prod(a.out for a in geo.axes) * _prod(geo.kernel)
    if steps > MAX_ENTRIES:
        raise UsageError(f"the kernel's {_prod(geo.kernel):,} taps at {_prod(a.out for a in geo.axes):,} positions are"
                         f" {steps:,} window steps; {limit}")
    return geo


def drawn_cells(geo: Geometry, animated: bool) -> int:
    """Rectangles --draw would write: both grids once (animated) or in every frame (a strip),
    and each frame's kernel footprint and output cell(s)."""
    axes = geo.axes if geo.rank == 2 else (Axis(1, 1),) + geo.axes
    frames = _prod(a.out for a in axes)
    padded = _prod(a.size + 2 * a.pad for a in axes)
    grids = padded + frames if not geo.transposed else frames + _prod((a.out - 1) * a.stride + a.reach for a in axes) + padded
    per_frame = _prod(a.kernel for a in axes) + 1
    return grids + frames * per_frame if animated else frames * (grids + per_frame)


def kconv(geo: Geometry, rows_up_to: int | None = None) -> dict[str, Any]:
    """K_conv (or K_convᵀ when transposed) symbolically: geometry plus {"matrix", "shape", "rows"}.

    With `rows_up_to`, a matrix with more rows or columns than that has no "rows" (a view that
    shows only its size builds nothing).

    Built from the per-axis index arithmetic of kconv_terms (u = i·s + t·d − p), in plain Python:
    the machine formats of a 1,024 x 1,024 matrix need no NumPy; `check` compares it with the
    kernels' K_conv.
    """
    axes = geo.axes
    # 1-D counts from 0 (x0, k0), as the term-by-term view; 2-D numbers cells from 1 in reading order
    head = {**geo.describe(), "matrix": "K_convᵀ" if geo.transposed else "K_conv", "index_base": 0 if geo.rank == 1 else 1,
            "shape": list(shape(geo))}
    if rows_up_to is not None and max(head["shape"]) > rows_up_to:
        return head
    outs, ins = positions(axes, adjoint=False), positions(axes, adjoint=True)
    base = head["index_base"]
    width = ins[-1][-1] + 1  # row-major flattening of a position: row · width + col
    kernel_width = axes[-1].kernel

    def flat(at: tuple[int, ...], w: int) -> int:
        return at[0] * w + at[1] if len(at) == 2 else at[0]

    rows = [["0"] * len(ins) for _ in outs]
    for row, at in zip(rows, outs):
        for tap, u in terms_of(axes, at, adjoint=False):
            row[flat(u, width)] = f"k{flat(tap, kernel_width) + base}"
    if geo.transposed:
        rows = [list(column) for column in zip(*rows)]
    return {**head, "rows": rows}


def symbolic(geo: Geometry, backward: bool) -> dict[str, Any]:
    """The term-by-term view: conv ∇x, transposed forward, or transposed ∇x, with its layout."""
    mode = ("transposed-backward" if backward else "transposed") if geo.transposed else "backward"
    return {"mode": mode, "terms": all_terms(geo.axes, mode), "layout": layout(geo.axes, mode)}


def drawing(geo: Geometry, animated: bool = True) -> dict[str, Any]:
    """Grids and frames of the sliding window (see kconv_terms.frames); past MAX_DRAWN_CELLS a UsageError."""
    cells = drawn_cells(geo, animated)
    if cells > MAX_DRAWN_CELLS:
        what = "an animation" if animated else "a --frames strip"
        raise UsageError(f"--draw: {what} of this convolution has {cells:,} cells; kconv draws at most {MAX_DRAWN_CELLS:,}"
                         " (about 13 MB of SVG): try a smaller --input" + ("" if animated else ", or no --frames"))
    return {**geo.describe(), **frames(geo.axes, geo.transposed, geo.output_padding or None)}


def lecture(geo: Geometry) -> dict[str, Any]:
    """What the HTML page shows beside K_conv: the drawing's frames and the term views (a conv's ∇x;
    a transposed conv's y and its ∇x)."""
    views = [symbolic(geo, False), symbolic(geo, True)] if geo.transposed else [symbolic(geo, True)]
    return {"drawing": drawing(geo, animated=True), "views": views}


# ---------------------------------------------------------------------------------------------
# numerical checks (float64, seeded): the matrix, the layer's NumPy forward/backward, the terms
# ---------------------------------------------------------------------------------------------


def _evaluate(rows: list[dict[str, Any]], k: Any, operand: Any, key: str) -> Any:
    """The symbolic sums with numbers: Σ k[tap]·operand[position] per target, as a flat vector."""
    import numpy as np

    return np.array([sum(k[tuple(t["k"])] * operand[tuple(t[key])] for t in row["terms"]) for row in rows])


def _evaluate_layout(lay: dict[str, Any], k: Any, operand: Any, operand_symbol: str) -> Any:
    """The drawing with numbers: Σ kernel[m]·laid-out operand[at + m] per window, as a flat vector."""
    import numpy as np

    def value(label: str, table: Any, symbol: str) -> float:
        if label == "0":
            return 0.0
        inside = label[len(symbol):].strip("[]")
        return float(table[tuple(int(v) for v in inside.split(","))])

    grid = np.array([[value(c, operand, operand_symbol) for c in row] for row in lay["operand"]])
    kern = np.array([[value(c, k, "k") for c in row] for row in lay["kernel"]])
    kh, kw = kern.shape
    out = []
    for window in lay["windows"]:
        r, c = (0, *window["at"]) if len(window["at"]) == 1 else window["at"]
        out.append(float(np.sum(kern * grid[r : r + kh, c : c + kw])))
    return np.array(out)


def _printed(geo: Geometry, k: Any) -> Any:
    """The printed matrix (K_conv, or K_convᵀ when transposed) with the kernel's numbers in place of its tap names."""
    import numpy as np

    data = kconv(geo)
    base = data["index_base"]
    # a name outside the kernel reads as NaN, which no tolerance accepts
    value = {"0": 0.0, **{f"k{t + base}": float(v) for t, v in enumerate(np.asarray(k).ravel())}}
    return np.array([[value.get(v, np.nan) for v in row] for row in data["rows"]])


def _result(what: str, expected: Any, got: Any) -> dict[str, Any]:
    """A check's record: max abs difference against a float64 rounding tolerance."""
    import numpy as np

    expected, got = np.asarray(expected).ravel(), np.asarray(got).ravel()
    tolerance = 1e-12 * (1 + float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(expected - got))) if expected.shape == got.shape else float("inf")
    return {"check": what, "error": error, "tolerance": tolerance, "passed": error <= tolerance}


def check(geo: Geometry, backward: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """The matrix against the layer's NumPy forward and backward; with `backward` (or transposed) also the terms and the drawing."""
    import numpy as np

    from .kernels.conv import conv_dx_full_correlation, kconv_adjoint, kconv_matrix

    rng = np.random.default_rng(seed)
    in_hw, k_hw, stride, pads, dilation = geo.lifted()
    k2 = rng.standard_normal(k_hw)
    k = k2[0] if geo.rank == 1 else k2  # the kernel as the symbols index it
    if geo.transposed:  # the conv from the transposed conv's output back to its input (height 1 in 1-D)
        x_hw = geo.input if geo.rank == 2 else (1, *geo.input)
        m = kconv_adjoint(k2[None, None], (1, 1, *x_hw), (1, 1, *in_hw), stride, pads, dilation, 1)
    else:
        m = kconv_matrix(k2, in_hw, stride, pads, dilation)
    x = rng.standard_normal((1, 1, *geo.input))
    weight = k.reshape(1, 1, *k.shape)
    y, cache = geo.layer.forward(x, {"weight": weight})
    dy = rng.standard_normal(y.shape)
    dx, _ = geo.layer.backward(dy, {"weight": weight}, cache)
    if geo.transposed:
        results = [
            _result("the printed K_convᵀ = the kernels' K_convᵀ", m.T, _printed(geo, k)),
            _result("vec(y) = K_convᵀ · vec(x)", m.T @ x.ravel(), y),
            _result("∇x = K_conv · vec(∇y)", m @ dy.ravel(), dx),
        ]
        view = symbolic(geo, backward)
        if backward:
            terms = _evaluate(view["terms"], k, dy[0, 0], "dy")
            return results + [
                _result("the ∂L/∂x terms = K_conv · vec(∇y)", m @ dy.ravel(), terms),
                _result("the ∂L/∂x terms = the layer's NumPy backward", dx, terms),
                _result("the drawing (∇y padded, kernel slid by the stride) = K_conv · vec(∇y)", m @ dy.ravel(), _evaluate_layout(view["layout"], k, dy[0, 0], "∂L/∂y")),
            ]
        terms = _evaluate(view["terms"], k, x[0, 0], "x")
        return results + [
            _result("the y terms = K_convᵀ · vec(x)", m.T @ x.ravel(), terms),
            _result("the y terms = the layer's NumPy forward", y, terms),
            _result("the drawing (x spread, padded, flipped k) = K_convᵀ · vec(x)", m.T @ x.ravel(), _evaluate_layout(view["layout"], k, x[0, 0], "x")),
        ]
    four = (lambda a: a[:, :, None, :]) if geo.rank == 1 else (lambda a: a)  # the kernels' (N, C, H, W)
    seed_dx = conv_dx_full_correlation(four(dy), four(weight), four(x).shape, stride, pads, dilation, 1)
    results = [
        _result("the printed K_conv = the kernels' K_conv", m, _printed(geo, k)),
        _result("vec(x ⋆ k) = K_conv · vec(x)", m @ x.ravel(), y),
        _result("∇x = K_convᵀ · vec(∇y)", m.T @ dy.ravel(), dx),
        _result("∇x = full correlation of ∇y with the flipped k", m.T @ dy.ravel(), seed_dx),
    ]
    if backward:
        view = symbolic(geo, True)
        terms = _evaluate(view["terms"], k, dy[0, 0], "dy")
        results += [
            _result("the ∂L/∂x terms = K_convᵀ · vec(∇y)", m.T @ dy.ravel(), terms),
            _result("the ∂L/∂x terms = the layer's NumPy backward", dx, terms),
            _result("the drawing (∇y spread, padded, flipped k) = K_convᵀ · vec(∇y)", m.T @ dy.ravel(), _evaluate_layout(view["layout"], k, dy[0, 0], "∂L/∂y")),
        ]
    return results
