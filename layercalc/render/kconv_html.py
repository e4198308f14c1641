"""kconv's lecture as one self-contained HTML page: K_conv, the sliding window frame by frame, ∇x's terms.

Every matrix entry, grid cell, window footprint and term carries the positions it joins as tokens
in `data-j`: aN an input position of the convolution, bN an output position, kN a kernel tap (N
the 0-based row-major index; a transposed convolution is the adjoint of the convolution from its
output back to its input, so its outputs are a's and its inputs b's). Pointing at (hovering or
focusing) an element lights every element that holds one of its positions alone (a grid cell, a
tap) and every element that joins the same ones (the matrix entry and the terms of that product);
pointing at a single position lights everything that holds it. Without JavaScript the page shows
the matrix, the first frame, every frame's sum and the terms; the script adds the stepping
(buttons, ← and →) and the lighting, and reads a link's fragment: #frame-3 opens that frame,
#a4+b1+k0 points at those positions. No network access: CSS, script and SVG are inline, and a
Content-Security-Policy allows the page's own script only (by its hash).
"""

from __future__ import annotations

from html import escape
from itertools import product
from typing import Any, NamedTuple

from .html import STYLE
from .kconv import TABLE_LIMIT, headline, matrix_title, too_large_note

CELL = 46  # px of a grid cell in the drawing: its name at the foot, a window's tap at the head
GAP = 2 * CELL  # between the drawing's grids

PAGE_STYLE = STYLE + """
table.k { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: .5rem 0 }
table.k th, table.k td { padding: 1px 6px; text-align: center; border: 1px solid var(--line) }
table.k td.z { color: var(--dim) }
.lit { background: var(--macs); color: var(--bg) !important; outline: 2px solid var(--macs) }
svg .lit, svg rect.lit { fill: var(--macs); fill-opacity: .6 }
svg rect { fill: var(--bg); stroke: var(--dim) } svg rect.pad { fill: var(--line) }
svg rect.foot { fill: var(--params); fill-opacity: .35; stroke: var(--params); stroke-width: 2 }
svg rect.out { fill: var(--acts); fill-opacity: .5 }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); pointer-events: none; text-anchor: middle }
.js .frame, .js .frame-eq { display: none } .js .frame.on { display: inline } .js .frame-eq.on { display: list-item }
.term, td[data-j], li[data-j] { cursor: default } [tabindex]:focus-visible { outline: 2px solid var(--params) }
ol.terms li { margin: .15rem 0 } .frames li.on { font-weight: 600 } .js ol.frames { list-style: none; padding: 0 }
"""

SCRIPT = """
(function () {
  document.documentElement.classList.add('js');
  var lit = [];
  function clear() { lit.forEach(function (e) { e.classList.remove('lit'); }); lit = []; }
  function light(joined) {
    clear();
    if (!/^[abk][0-9]+( [abk][0-9]+)*$/.test(joined)) { return; }
    var tokens = joined.split(' '), sel;
    if (tokens.length === 1) { sel = '[data-j~="' + joined + '"]'; }
    else { sel = tokens.map(function (t) { return '[data-j="' + t + '"]'; }).join(',') + ',[data-j="' + joined + '"]'; }
    document.querySelectorAll(sel).forEach(function (e) { e.classList.add('lit'); lit.push(e); });
  }
  function pointed(ev) {
    var el = ev.target.closest && ev.target.closest('[data-j]');
    if (el) { light(el.getAttribute('data-j')); }
  }
  document.addEventListener('mouseover', pointed);
  document.addEventListener('focusin', pointed);
  document.addEventListener('mouseleave', clear);
  var frames = document.querySelectorAll('.frame'), sums = document.querySelectorAll('.frame-eq');
  var count = document.getElementById('frame-count'), at = 0;
  function show(i) {
    at = (i + frames.length) % frames.length;
    frames.forEach(function (f, k) { f.classList.toggle('on', k === at); });
    sums.forEach(function (f, k) { f.classList.toggle('on', k === at); });
    count.textContent = 'frame ' + (at + 1) + ' of ' + frames.length;
  }
  document.getElementById('prev').addEventListener('click', function () { show(at - 1); });
  document.getElementById('next').addEventListener('click', function () { show(at + 1); });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === 'ArrowRight') { show(at + 1); } else if (ev.key === 'ArrowLeft') { show(at - 1); }
  });
  // a link can open a frame (#frame-3) or point at positions (#a4+b1+k0)
  var hash = decodeURIComponent(location.hash.slice(1)), frame = /^frame-([0-9]+)$/.exec(hash);
  show(frame ? parseInt(frame[1], 10) - 1 : 0);
  if (!frame && hash) { light(hash.replace(/[+]/g, ' ')); }
})();
"""


def _policy() -> str:
    """The page's own script (by its hash) and inline styles; nothing else loads or runs."""
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


Pos = tuple[int, int]  # (row, col); row 0 in 1-D


def term_name(symbol: str, index: tuple[int, ...]) -> str:
    """A position as kconv's terms name it: 'x3' in 1-D, 'x[1,2]' in 2-D."""
    return f"{symbol}{index[0]}" if len(index) == 1 else f"{symbol}[{','.join(str(i) for i in index)}]"


class Space:
    """The page's index arithmetic: positions of the convolution's input (a) and output (b), lifted to 2-D."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.rank, self.transposed, self.base = data["rank"], data["transposed"], data["index_base"]
        conv_in, conv_out = (data["output"], data["input"]) if self.transposed else (data["input"], data["output"])
        self.sizes = {"a": self._lift(conv_in), "b": self._lift(conv_out)}
        self.kernel = self._lift(data["kernel"])

    def _lift(self, values: list[int]) -> Pos:
        return (1, values[0]) if self.rank == 1 else (values[0], values[1])

    def token(self, kind: str, pos: Pos) -> str | None:
        """'a7' for an input position inside the input, None for padding (or past the grid)."""
        rows, cols = self.sizes[kind]
        return f"{kind}{pos[0] * cols + pos[1]}" if 0 <= pos[0] < rows and 0 <= pos[1] < cols else None

    def name(self, symbol: str, pos: Pos) -> str:
        """A position's name as the terms write it: x3 in 1-D, x[1,2] in 2-D."""
        return term_name(symbol, (pos[1],) if self.rank == 1 else pos)

    def lift(self, at: list[int]) -> Pos:
        """A position as the terms give it (1 or 2 ints) -> (row, col)."""
        return (0, at[0]) if len(at) == 1 else (at[0], at[1])

    def symbol(self, kind: str) -> str:
        """What the page calls a's and b's: the conv's x and y, or the transposed conv's y and x."""
        return {"a": "y", "b": "x"}[kind] if self.transposed else {"a": "x", "b": "y"}[kind]


def _matrix(data: dict[str, Any]) -> str:
    """K_conv (or K_convᵀ) as a table whose entries carry the input, output and tap they join."""
    if max(data["shape"]) > TABLE_LIMIT:
        return f"<p>{escape(too_large_note(data))}</p>"
    base, transposed = data["index_base"], data["transposed"]
    head = "".join(f"<th>x{j + base}</th>" for j in range(data["shape"][1]))
    lines = []
    for i, row in enumerate(data["rows"]):
        cells = []
        for j, value in enumerate(row):
            if value == "0":
                cells.append('<td class="z">0</td>')
                continue
            a, b = (i, j) if transposed else (j, i)  # K_conv's rows are the conv's outputs, K_convᵀ's its inputs
            cells.append(f'<td tabindex="0" data-j="a{a} b{b} k{int(value[1:]) - base}">{escape(value)}</td>')
        lines.append(f"<tr><th>y{i + base}</th>{''.join(cells)}</tr>")
    return f'<table class="k"><tr><th></th>{head}</tr>{"".join(lines)}</table>'


def _rect(x: int, y: int, cls: str, joined: str | None, label: str = "", top: bool = False) -> str:
    """One cell of the drawing, with its label (at its foot, or its head for a window's tap) and the positions it lights."""
    j = f' data-j="{joined}"' if joined else ""
    rect = f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" class="{cls}"{j}></rect>'
    text = f'<text x="{x + CELL // 2}" y="{y + (14 if top else CELL - 8)}">{escape(label)}</text>' if label else ""
    return rect + text


class Grid(NamedTuple):
    """A grid of the drawing: which positions it holds (a or b), its box from the drawing, its left edge in px."""

    kind: str
    box: dict[str, Any]
    left: int

    def position(self, cell: list[int] | Pos) -> Pos:
        """A cell of the box -> the position it holds (outside the positions: padding, or cropped)."""
        return (cell[0] - self.box["border"][0], cell[1] - self.box["border"][1])


def _grid_svg(space: Space, grid: Grid) -> str:
    """Every cell of a grid: positions named and lit, padding shaded."""
    out = []
    for r, c in product(range(grid.box["rows"]), range(grid.box["cols"])):
        pos = grid.position((r, c))
        token = space.token(grid.kind, pos)
        label = space.name(space.symbol(grid.kind), pos) if token else "0"
        out.append(_rect(grid.left + c * CELL, r * CELL, "cell" if token else "pad", token, label))
    return "".join(out)


def _frame_svg(space: Space, frame: dict[str, Any], on: bool, grids: dict[str, Grid]) -> str:
    """One step of the window: the footprint (a tap per cell) over the a-grid, and the b position it joins."""
    foot, (r0, c0) = (frame["target"], frame["source"][0]) if space.transposed else (frame["source"], frame["target"][0])
    b = space.token("b", grids["b"].position((r0, c0)))
    parts = [_rect(grids["b"].left + c0 * CELL, r0 * CELL, "out", b, "●", top=True)]
    for tap, spot in enumerate(foot):  # in the kernel's row-major order
        r, c = spot["cell"]
        a = space.token("a", grids["a"].position((r, c)))
        joined = " ".join(t for t in (a, b, f"k{tap}") if t)
        parts.append(_rect(grids["a"].left + c * CELL, r * CELL, "foot", joined, spot["k"], top=True))
    return f'<g class="frame{" on" if on else ""}">{"".join(parts)}</g>'


def _equation(space: Space, frame: dict[str, Any], grid: Grid) -> str:
    """A frame's sum in words (taps on padding multiply zeros, and taps on cropped cells reach nothing: left out)."""
    foot = frame["target"] if space.transposed else frame["source"]
    reached = [(spot["k"], grid.position(spot["cell"])) for spot in foot]
    named = [(k, space.name(space.symbol("a"), pos)) for k, pos in reached if space.token("a", pos)]
    if space.transposed:
        return f"{frame['name']} spreads: " + (", ".join(f"{y} += {k}·{frame['name']}" for k, y in named) or "onto cropped cells only")
    return f"{frame['name']} = " + (" + ".join(f"{k}·{x}" for k, x in named) or "0")


def _drawing(space: Space, drawing: dict[str, Any]) -> str:
    """The grids once, each frame's footprint as a group over them, stepping controls and every frame's sum."""
    left_kind, right_kind = ("b", "a") if space.transposed else ("a", "b")
    kh, kw = space.kernel
    taps = "".join(_rect(c * CELL, r * CELL, "cell", f"k{r * kw + c}", space.name("k", (r, c)))
                   for r, c in product(range(kh), range(kw)))
    left = Grid(left_kind, drawing["source"], kw * CELL + GAP)
    right = Grid(right_kind, drawing["target"], left.left + left.box["cols"] * CELL + GAP)
    grids = {g.kind: g for g in (left, right)}
    width = right.left + right.box["cols"] * CELL
    height = max(left.box["rows"], right.box["rows"], kh) * CELL
    frames = "".join(_frame_svg(space, f, n == 0, grids) for n, f in enumerate(drawing["frames"]))
    what = "output" if space.transposed else "input"
    svg = (f'<svg width="{width}" height="{height}" role="img" aria-label="the window sliding over the {what}"'
           f' xmlns="http://www.w3.org/2000/svg">{taps}{_grid_svg(space, left)}{_grid_svg(space, right)}'
           f'<text x="{right.left - GAP // 2}" y="{height // 2}">→</text>{frames}</svg>')
    sums = "".join(f'<li class="frame-eq{" on" if n == 0 else ""}">{escape(_equation(space, f, grids["a"]))}</li>'
                   for n, f in enumerate(drawing["frames"]))
    controls = ('<p><button type="button" id="prev">← previous</button><button type="button" id="next">next →</button>'
                f'<span id="frame-count" class="dim">{len(drawing["frames"])} frames</span></p>')
    return f'{controls}\n{svg}\n<ol class="frames">{sums}</ol>'


# mode -> (what the targets are, what the operands are): a = the conv's inputs, b = its outputs
KINDS = {"backward": ("a", "b"), "transposed": ("a", "b"), "transposed-backward": ("b", "a")}
TITLES = {"backward": "∇x term by term: ∂L/∂x = K_convᵀ · vec(∂L/∂y)",
          "transposed": "y term by term: y = K_convᵀ · vec(x)",
          "transposed-backward": "∇x term by term: ∂L/∂x = K_conv · vec(∂L/∂y)"}


def _terms(space: Space, view: dict[str, Any]) -> str:
    """Each target's sum, each product a term that lights the target, the operand and the tap it joins."""
    target_kind, operand_kind = KINDS[view["mode"]]
    items = []
    for row in view["terms"]:
        target = space.token(target_kind, space.lift(row["at"]))
        parts = []
        for term in row["terms"]:
            key = "dy" if "dy" in term else "x"
            operand = space.token(operand_kind, space.lift(term[key]))
            tap = space.lift(term["k"])
            joined = " ".join(sorted((f"{target}", f"{operand}", f"k{tap[0] * space.kernel[1] + tap[1]}")))
            text = f"{term_name('k', tuple(term['k']))}·{term_name('∂L/∂y' if key == 'dy' else 'x', tuple(term[key]))}"
            parts.append(f'<span class="term" tabindex="0" data-j="{joined}">{escape(text)}</span>')
        items.append(f'<li><span tabindex="0" data-j="{target}">{escape(row["name"])}</span> = '
                     f'{" + ".join(parts) or "0"}</li>')
    return f'<h2>{escape(TITLES[view["mode"]])}</h2>\n<ol class="terms">{"".join(items)}</ol>'


def _checks(data: dict[str, Any]) -> str:
    """--check's results, one line each."""
    rows = "".join(f'<tr><td>{escape(c["check"])}</td><td class="n">{c["error"]:.2e}</td>'
                   f'<td class="dim">{"ok" if c["passed"] else "FAIL"}</td></tr>' for c in data.get("checks", []))
    return f'<h2>Checks (float64)</h2><table class="totals">{rows}</table>' if rows else ""


def kconv_page(data: dict[str, Any]) -> str:
    """The whole lecture page for kconv data with its drawing and term views (kconv.lecture)."""
    space = Space(data)
    title = escape(headline(data))
    terms = "\n".join(_terms(space, view) for view in data["views"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_policy()}">
<title>layercalc kconv: {title}</title><style>{PAGE_STYLE}</style></head>
<body>
<header><h1>Convolution as a matrix</h1><p class="meta">{title}</p>
<p class="dim">Point at a matrix entry, a cell or a term: the input, kernel and output positions it joins light up.</p></header>
<h2>{escape(matrix_title(data))}</h2>
{_matrix(data)}
<h2>The window sliding over the {"output" if space.transposed else "input"}</h2>
{_drawing(space, data["drawing"])}
{terms}
{_checks(data)}
<script>{SCRIPT}</script>
</body></html>
"""


def write_page(data: dict[str, Any], page: Any) -> None:
    """kconv as the HTML lecture page."""
    page.file.write(kconv_page(data))
