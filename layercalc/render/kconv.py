"""kconv's views: K_conv as a table, the gradient term by term, and the lecture's sliding layout.

Plain text lines are built here without Rich (the machine formats and the tests read them);
table.render_kconv prints them on a terminal, wrapped to its width, with the matrix in column
blocks (every entry shown) up to TABLE_LIMIT rows and columns.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from . import Page
from .formats import json_rows, table_text
from .layout import GAP

# K_conv is printed as a table up to this many rows and columns (the matrix of a 10x10 input,
# or of 100 positions in 1-D); past that it is pages of column blocks nobody reads, and the
# machine formats hold every entry instead
TABLE_LIMIT = 100
# a matrix's entries are short (0, k1) and alike: one space more than a table's gap keeps its columns apart
MATRIX_GAP = GAP + 1
Segment = tuple[str, str]  # (text, Rich style): a matrix line is a list of them


def sizes(values: list[int]) -> str:
    """[5] -> '5', [3, 4] -> '3x4'."""
    return "x".join(str(v) for v in values)


def headline(data: dict[str, Any]) -> str:
    """'a 1-D convolution: input 5, kernel 3, stride 1, padding 0, dilation 1, output 3'."""
    kind = "transposed convolution" if data["transposed"] else "convolution"
    parts = [f"{key.replace('_', ' ')} {sizes(data[key])}" for key in ("input", "kernel", "stride", "padding", "dilation", "output_padding") if key in data]
    return f"a {data['rank']}-D {kind}: {', '.join(parts)}, output {sizes(data['output'])}"


def matrix_title(data: dict[str, Any]) -> str:
    """'K_conv 4 x 9: vec(y) = K_conv · vec(x)'."""
    h, w = data["shape"]
    return f"{data['matrix']} {h} x {w}: vec(y) = {data['matrix']} · vec(x)"


SUMS = {
    "backward": "∇x = K_convᵀ · vec(∇y), one line per input",
    "transposed": "y = K_convᵀ · vec(x), one line per output",
    "transposed-backward": "∇x = K_conv · vec(∇y), one line per input",
}


def _layout_intro(view: dict[str, Any], data: dict[str, Any]) -> str:
    lay = view["layout"]
    operand = "x" if view["mode"] == "transposed" else "∇y"
    if not lay["flipped"]:
        return (f"The same as a strided correlation of {operand}, padded with p = {sizes(data['padding'])} zeros,"
                f" with the kernel moved s = {sizes(data['stride'])} cells per ∂L/∂x:")
    before, between = sizes(lay["zeros_before"]), sizes(lay["zeros_between"])
    cut = " (negative: that many cells cut)" if min(lay["zeros_before"]) < 0 else ""
    return (f"The same as a full correlation of {operand}, spread and padded with zeros (s − 1 = {between} between entries,"
            f" d·(k − 1) − p = {before} before{cut}), with the flipped kernel:")


def _bracket(rows: list[list[str]]) -> list[str]:
    """A grid as the lecture writes a vector: '[0 0 ∂L/∂y0 0 0]', one bracketed line per row, columns aligned."""
    if len(rows) == 1:
        return ["[" + " ".join(rows[0]) + "]"]
    width = max(len(c) for row in rows for c in row)
    return ["[" + " ".join(c.rjust(width) for c in row) + "]" for row in rows]


def _sliding(lay: dict[str, Any]) -> list[str]:
    """1-D: the operand row, then one row per target with the kernel under the cells it covers."""
    row, kernel = lay["operand"][0], lay["kernel"][0]
    width = max(len(c) for c in row + kernel)
    label = max(len(w["name"]) for w in lay["windows"])
    lines = [" " * (label + 2) + " ".join(c.ljust(width) for c in row).rstrip()]
    for window in lay["windows"]:
        cells = [""] * len(row)
        for m, tap in enumerate(kernel):
            cells[window["at"][0] + m] = tap
        lines.append(f"{window['name'].ljust(label)}  " + " ".join(c.ljust(width) for c in cells).rstrip())
    return lines


def symbolic_lines(data: dict[str, Any], width: int | None = None) -> list[str]:
    """The term-by-term view and the lecture's layout, as plain text lines; prose and sums wrapped to `width`.

    A wrapped sum continues under its first term; the laid-out grids are not wrapped.
    """
    view = data["symbolic"]
    lay = view["layout"]
    lines = [*fill(headline(data), width), *fill(f"{SUMS[view['mode']]}:", width)]
    for row in view["terms"]:
        lines += fill(f"  {row['text']}", width, indent=len(row["name"]) + 3)
    lines += ["", *fill(_layout_intro(view, data), width)]
    kernel_name = "flipped kernel" if lay["flipped"] else "kernel"
    operand_name = "x laid out" if view["mode"] == "transposed" else "∇y laid out"
    grid, kern = _bracket(lay["operand"]), _bracket(lay["kernel"])
    if len(grid) == 1:
        lines += [f"  {operand_name}: {grid[0]}", f"  {kernel_name}: {kern[0]}", ""]
        lines += [f"  {line}" for line in _sliding(lay)]
    else:
        lines += [f"  {operand_name}:"] + [f"    {line}" for line in grid]
        lines += [f"  {kernel_name}:"] + [f"    {line}" for line in kern]
        step = "one cell" if lay["flipped"] else "s cells"
        target = lay["windows"][0]["name"].split("[")[0]
        lines += fill(f"  {target}[u,v] = the {kernel_name} on the cells from its top-left corner at "
                      + ("(u,v)" if lay["flipped"] else "(u·s,v·s)") + f", moved {step} per position", width)
    return lines


def check_lines(data: dict[str, Any]) -> list[str]:
    """'ok   what: error 1.1e-16, tolerance 1.7e-12', one per check."""
    return [f"{'ok  ' if c['passed'] else 'FAIL'} {c['check']}: error {c['error']:.1e}, tolerance {c['tolerance']:.1e}" for c in data.get("checks", [])]


NBSP = "\u00a0"


def fill(text: str, width: int | None, indent: int = 2) -> list[str]:
    """One prose line as lines of at most `width` characters (continuations indented); as is when width is None.

    A number stays on the line of the word before it ("dilation 1x1", "error 4.4e-16").
    """
    if width is None or len(text) <= width:
        return [text]
    lead = len(text) - len(text.lstrip(" "))
    glued = re.sub(r" (?=\d)", NBSP, text.lstrip(" "))  # textwrap breaks only at ASCII whitespace
    lines = textwrap.wrap(glued, width, initial_indent=" " * lead, subsequent_indent=" " * (lead + indent),
                          break_long_words=False, break_on_hyphens=False)
    return [line.replace(NBSP, " ") for line in lines]


def title_lines(data: dict[str, Any], width: int | None) -> list[str]:
    """The matrix title with the geometry beside it when both fit the width, else below it."""
    title, rest = matrix_title(data), headline(data)
    if width is None or len(title) + 3 + len(rest) <= width:
        return [f"{title}   {rest}"]
    return fill(title, width) + fill(rest, width)


def rows_shown(fmt: str) -> int | None:
    """How many rows of K_conv a format shows: a table (or the HTML page) up to TABLE_LIMIT (a larger one is left out,
    so it need not be built); the machine formats every one (None)."""
    return TABLE_LIMIT if fmt in ("table", "html") else None


def too_large(data: dict[str, Any]) -> bool:
    """Whether K_conv has more rows or columns than a table can show readably."""
    return max(data["shape"]) > TABLE_LIMIT


def matrix_lines(data: dict[str, Any], width: int) -> list[list[Segment]]:
    """K_conv as lines of (text, style) segments, every entry shown, in column blocks of at most `width` characters.

    All columns have one width (the widest entry or heading), so every block but the last holds
    the same number of columns; a matrix wider than the width is cut into blocks of whole columns,
    each headed "Columns x13 through x24", as MATLAB and R print wide matrices.
    """
    base = data["index_base"]
    rows = data["rows"]
    heads = [f"x{j + base}" for j in range(data["shape"][1])]
    labels = [f"y{i + base}" for i in range(data["shape"][0])]
    cell = max(max(map(len, heads)), max(len(v) for row in rows for v in row))
    label = max(map(len, labels))
    per = max(1, (width - 1 - label) // (cell + MATRIX_GAP))
    lines: list[list[Segment]] = []
    for start in range(0, len(heads), per):
        stop = min(len(heads), start + per)
        if per < len(heads):
            lines.append([(f"Columns {heads[start]} through {heads[stop - 1]}" if stop - start > 1 else f"Column {heads[start]}", "bold")])
        lines.append([])
        lines.append([(" " + " " * label + "".join(" " * MATRIX_GAP + h.rjust(cell) for h in heads[start:stop]), "bold")])
        lines.append([(" " + "─" * (label + (stop - start) * (cell + MATRIX_GAP)), "")])
        for name, row in zip(labels, rows):
            line: list[Segment] = [(" " + name.ljust(label), "")]
            for v in row[start:stop]:
                line += [(" " * (MATRIX_GAP + cell - len(v)), ""), (v, "dim" if v == "0" else "bold cyan")]
            lines.append(line)
        lines.append([])
    return lines


def too_large_note(data: dict[str, Any]) -> str:
    """The one line that replaces a matrix too large to read as a table."""
    h, w = data["shape"]
    return (f"note: {data['matrix']} {h} x {w} ({h * w:,} entries) is too large to read as a table"
            f" (at most {TABLE_LIMIT} rows and columns); -f tsv, csv or json give every entry")


def kconv_json(data: dict[str, Any]) -> str:
    """The JSON document, each matrix row on one line (indented, a million entries would be a million lines)."""
    return json_rows(data, "rows")


def kconv_text(fmt: str, data: dict[str, Any]) -> str:
    """csv/tsv/markdown: the terms (name, sum) with --backward/--transposed, else K_conv (x1.. by y1..)."""
    if "symbolic" in data:
        rows = [[row["name"], row["text"].split(" = ", 1)[1]] for row in data["symbolic"]["terms"]]
        text = table_text(fmt, ["name", "sum"], rows)
    else:
        base = data["index_base"]
        header = ["", *(f"x{j + base}" for j in range(data["shape"][1]))]
        text = table_text(fmt, header, [[f"y{i + base}", *row] for i, row in enumerate(data["rows"])])
    for c in data.get("checks", []):
        text += f"# {c['check']}: error {c['error']:.2e}, tolerance {c['tolerance']:.2e}, {'ok' if c['passed'] else 'FAIL'}\n"
    return text


def write_json(data: dict[str, Any], page: Page) -> None:
    """kconv as JSON, a matrix row a line."""
    page.file.write(kconv_json(data))


def write_text(data: dict[str, Any], page: Page) -> None:
    """kconv as csv/tsv/markdown."""
    page.file.write(kconv_text(page.format, data))
