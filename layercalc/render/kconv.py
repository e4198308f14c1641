"""kconv's views: K_conv as a table, the gradient term by term, and the lecture's sliding layout.

Plain text lines are built here without Rich (the machine formats and the tests read them);
`render_kconv` prints them, and the matrix as a Rich table, on a terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .formats import table_text

if TYPE_CHECKING:
    from rich.console import Console


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


def symbolic_lines(data: dict[str, Any]) -> list[str]:
    """The term-by-term view and the lecture's layout, as plain text lines."""
    view = data["symbolic"]
    lay = view["layout"]
    lines = [f"{headline(data)}", f"{SUMS[view['mode']]}:"]
    lines += [f"  {row['text']}" for row in view["terms"]]
    lines += ["", _layout_intro(view, data)]
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
        lines += [f"  {target}[u,v] = the {kernel_name} on the cells from its top-left corner at "
                  + ("(u, v)" if lay["flipped"] else "(u·s, v·s)") + f", moved {step} per position"]
    return lines


def check_lines(data: dict[str, Any]) -> list[str]:
    """'ok   what: error 1.1e-16, tolerance 1.7e-12', one per check."""
    return [f"{'ok  ' if c['passed'] else 'FAIL'} {c['check']}: error {c['error']:.1e}, tolerance {c['tolerance']:.1e}" for c in data.get("checks", [])]


def render_kconv(data: dict[str, Any], out: Console) -> None:
    """The terminal view: K_conv as a table (zeros dimmed) and/or the symbolic view, then the checks."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if "rows" in data and ("symbolic" not in data or data["symbolic"]["mode"] == "transposed"):
        # with the terms below, their headline names the geometry once
        rest = "" if "symbolic" in data else f"  {headline(data)}"
        out.print(Text(matrix_title(data), style="bold"), rest, highlight=False, soft_wrap=True)
        base = data["index_base"]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("")
        for j in range(data["shape"][1]):
            table.add_column(f"x{j + base}", justify="right")
        for i, row in enumerate(data["rows"]):
            table.add_row(f"y{i + base}", *(Text(v, style="dim" if v == "0" else "bold cyan") for v in row))
        out.print(table)
    if "symbolic" in data:
        for line in symbolic_lines(data):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        out.print()
    for c, line in zip(data.get("checks", []), check_lines(data)):
        mark, text = line[:4], line[5:]
        out.print(Text(mark, style="green" if c["passed"] else "bold red"), text, markup=False, highlight=False, soft_wrap=True)


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
