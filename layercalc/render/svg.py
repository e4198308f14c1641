"""The sliding window as SVG text, drawn as Dumoulin & Visin draw convolution arithmetic.

Blue: the input, its zero padding shaded grey with a dashed outline; the dark overlay is the
kernel's footprint, labelled with its taps (dilation leaves gaps between them); cyan: the
output, the cell being produced in dark cyan. A transposed convolution moves over its input
instead: each input cell stamps the kernel onto the full output, whose outer p cells (the
padding) are cropped. Animated with SMIL (one frame per position, looping; a viewer without
animation shows the first frame), or, for print, a static strip of every frame. No dependencies.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

CELL = 40  # px per grid cell
GRID_GAP = 2 * CELL  # between the two grids
MARGIN = 16
TITLE = 42  # px above the grids: the title and the frame's caption
SECONDS = 0.8  # per frame
EM = 0.56  # average glyph width per font size (DejaVu Sans): how wide a text line will be

INPUT, PAD, OUTPUT, CURRENT, FOOT, LINE = "#9cc3e6", "#e4e4e4", "#a7e0de", "#1c8c88", "#1f2d3d", "#555"


def _name(symbol: str, index: tuple[int, ...], flat: bool) -> str:
    return f"{symbol}{index[-1]}" if flat else f"{symbol}[{index[0]},{index[1]}]"


def _grid(grid: dict[str, Any], x0: int, y0: int, fill: str, role: str) -> list[str]:
    """A grid of cells; the `border` outer cells (padding or cropped) shaded with a dashed outline."""
    rows, cols, (br, bc) = grid["rows"], grid["cols"], grid["border"]
    out = [f'<g class="grid" data-role="{role}" data-x="{x0}" data-y="{y0}" data-cell="{CELL}" data-rows="{rows}" data-cols="{cols}" data-border="{br},{bc}">']
    for r in range(rows):
        for c in range(cols):
            border = not (br <= r < rows - br and bc <= c < cols - bc)
            style = f'fill="{PAD}" stroke="{LINE}" stroke-dasharray="4 3"' if border else f'fill="{fill}" stroke="{LINE}"'
            out.append(f'<rect x="{x0 + c * CELL}" y="{y0 + r * CELL}" width="{CELL}" height="{CELL}" {style}/>')
    out.append("</g>")
    return out


def _inside(cell: list[int], grid: dict[str, Any]) -> tuple[int, int] | None:
    """A grid cell as an index of the real (unpadded / uncropped) tensor, or None on the border."""
    (r, c), (br, bc) = cell, grid["border"]
    if br <= r < grid["rows"] - br and bc <= c < grid["cols"] - bc:
        return r - br, c - bc
    return None


def _caption(data: dict[str, Any], frame: dict[str, Any]) -> str:
    """'y1 = k0·x1 + k1·x2 + k2·x3' (padding taps dropped), or for a transposed conv what one input adds where."""
    flat = data["rank"] == 1
    if not data["transposed"]:
        terms = [(cell["k"], _inside(cell["cell"], data["source"])) for cell in frame["source"]]
        sum_ = " + ".join(f"{k}·{_name('x', at, flat)}" for k, at in terms if at is not None) or "0 (all padding)"
        return f"{frame['name']} = {sum_}"
    hits = [(cell["k"], _inside(cell["cell"], data["target"])) for cell in frame["target"]]
    kept = [f"{k}·{frame['name']} → {_name('y', at, flat)}" for k, at in hits if at is not None]
    return f"{frame['name']}: " + (", ".join(kept) if kept else "every product cropped")


def _frame(data: dict[str, Any], frame: dict[str, Any], origin: tuple[int, int], target_x: int) -> list[str]:
    """One position: the footprint (or the input cell) on the left, the output cell(s) on the right."""
    x0, y0 = origin
    out = [f'<text x="{x0}" y="{y0 - 10}" font-size="14" class="caption">{escape(_caption(data, frame))}</text>']
    left = [(cell["cell"], cell["k"]) for cell in frame["source"]] if not data["transposed"] else [(cell, "") for cell in frame["source"]]
    right = [(cell["cell"], cell["k"]) for cell in frame["target"]] if data["transposed"] else [(cell, "") for cell in frame["target"]]
    for side, cells, gx in (("window", left, x0), ("target", right, target_x)):
        fill, opacity = (FOOT, 0.55) if (side == "window") != data["transposed"] else (CURRENT, 0.9)
        for (r, c), label in cells:
            x, y = gx + c * CELL, y0 + r * CELL
            out.append(f'<rect class="{side}" data-cell="{r},{c}" x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" fill-opacity="{opacity}" stroke="#000"/>')
            if label:
                out.append(f'<text x="{x + CELL / 2}" y="{y + CELL / 2 + 4}" font-size="{10 if len(label) < 5 else 9}" text-anchor="middle" fill="#fff">{escape(label)}</text>')
    return out


def _title(data: dict[str, Any]) -> str:
    kind = "transposed convolution" if data["transposed"] else "convolution"
    keys = ("input", "kernel", "stride", "padding", "dilation", "output_padding")
    parts = ", ".join(f"{k.replace('_', ' ')} {'x'.join(map(str, data[k]))}" for k in keys if k in data)
    return f"{data['rank']}-D {kind}: {parts}, output {'x'.join(map(str, data['output']))}"


def _shown_during(i: int, n: int) -> tuple[str, str]:
    """(values, keyTimes) of a discrete animation that shows frame i of n during [i/n, (i+1)/n) of the loop.

    Three values at most per frame (hidden, visible, hidden), so the document grows linearly
    with the frames: a list of n values per frame made 900 frames weigh 15 MB.
    """
    steps = [("hidden", 0.0)] if i else []
    steps.append(("visible", i / n))
    if i < n - 1:
        steps.append(("hidden", (i + 1) / n))
    return ";".join(v for v, _ in steps), ";".join(f"{t:.6f}" for _, t in steps)


def svg(data: dict[str, Any], animated: bool = True, columns: int = 4) -> str:
    """The drawing (kconv.drawing's data) as an SVG document: animated, or a strip of every frame."""
    src, dst, frames = data["source"], data["target"], data["frames"]
    left_fill, right_fill = INPUT, OUTPUT
    caption = max(len(_caption(data, frame)) for frame in frames) * 14 * EM
    width = 2 * MARGIN + max((src["cols"] + dst["cols"]) * CELL + GRID_GAP, int(caption) + 1)
    height = TITLE + max(src["rows"], dst["rows"]) * CELL + MARGIN
    n = len(frames)
    unit = "input" if data["transposed"] else "output"

    def panel(x: int, y: int) -> tuple[list[str], tuple[int, int], int]:
        gx, gy = x + MARGIN, y + TITLE
        tx = gx + src["cols"] * CELL + GRID_GAP
        return _grid(src, gx, gy, left_fill, "source") + _grid(dst, tx, gy, right_fill, "target"), (gx, gy), tx

    head = 24
    parts: list[str] = []
    if animated:
        total_w, total_h = width, height + head
        base, origin, tx = panel(0, head)
        parts += base
        for i, frame in enumerate(frames):
            parts.append(f'<g class="frame" data-frame="{i}" data-name="{escape(frame["name"])}" visibility="{"visible" if i == 0 else "hidden"}">')
            if n > 1:
                values, times = _shown_during(i, n)
                parts.append(f'<animate attributeName="visibility" values="{values}" keyTimes="{times}" calcMode="discrete" dur="{n * SECONDS:g}s" repeatCount="indefinite"/>')
            parts += _frame(data, frame, origin, tx)
            parts.append("</g>")
    else:
        cols = min(columns, n)
        rows = -(-n // cols)
        total_w, total_h = cols * width, rows * height + head
        for i, frame in enumerate(frames):
            x, y = (i % cols) * width, head + (i // cols) * height
            base, origin, tx = panel(x, y)
            parts.append(f'<g class="frame" data-frame="{i}" data-name="{escape(frame["name"])}">')
            parts += base + _frame(data, frame, origin, tx)
            parts.append("</g>")
    title = f"{_title(data)} — one frame per {unit} position ({n})"
    total_w = max(total_w, 2 * MARGIN + int(len(title) * 14 * EM) + 1)
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" '
        f'font-family="DejaVu Sans, Arial, sans-serif" data-frames="{n}" data-per="{unit}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{total_w}" height="{total_h}" fill="#fff"/>',
        f'<text x="{MARGIN}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
        *parts,
        "</svg>",
        "",
    ])
