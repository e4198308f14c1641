"""The terminal view (Rich): a table that reads at a glance, and a footer of exact totals.

The only module besides verify's progress display that imports Rich; imported only when a
table is actually printed, so machine formats and --total never pay for it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple, Sequence, TextIO

from rich.console import COLOR_SYSTEMS, Console
from rich.markup import escape
from rich.style import Style
from rich.table import Table
from rich.text import Text

from . import Page
from . import kconv as kc
from .columns import CORE_LAST, DEFAULTS, OPTIONAL, REGISTRY, Column, share, terminal_cell, with_backward
from .formats import human, human_bytes, input_text, ljust, rjust, shown, times, width as cells
from .layout import GAP, MARGIN, Plan, fit_name, fold_parts, line_width, plan, wrap_tokens

BAR_WIDTH = 8
DIM, BOLD, MAGENTA, DIM_MAGENTA, CYAN = (Style.parse(s) for s in ("dim", "bold", "magenta", "dim magenta", "cyan"))
DIM_ITALIC = Style.parse("dim italic")
TITLES = {"params": "Params", "buffers": "Buffers", "macs": "MACs", "flops": "FLOPs", "backward_macs": "Backward MACs"}


class _Console(Console):
    """Rich's Console, but a reader that went away (`| head -1`) is not a failure."""

    def on_broken_pipe(self) -> None:
        # Rich exits 1 here, the status of a failed check; the entry point exits 0 for it
        self.quiet = True
        raise BrokenPipeError


def console(file: TextIO | None = None, width: int | None = None) -> Console:
    """A Console on stdout (or file); Rich itself honours NO_COLOR, COLUMNS and non-terminals."""
    out = _Console(file=file, highlight=False, soft_wrap=False, width=width)
    if out.width < 1:  # COLUMNS=0 is no width known: Rich's own default, not a view of nothing
        out.width = 80
    return out


def _bar_parts(share: float) -> tuple[str, str]:
    """'████▍   ' and ' 42.3%': a small bar (BAR_WIDTH characters, in eighths) so the heavy layers stand out."""
    eighths = round(max(0.0, min(1.0, share)) * BAR_WIDTH * 8)
    full, part = divmod(eighths, 8)
    blocks = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return blocks.ljust(BAR_WIDTH), f" {share * 100:5.1f}%"


def write_lines(out: Console, lines: list[list[tuple[str, Style | None]]]) -> None:
    """Write pre-laid-out lines of (text, style) pieces in one go, coloured as the console allows.

    The layout already fits the width, so nothing is left for Rich to measure, wrap or crop: each
    styled piece becomes the terminal's codes (none under NO_COLOR or into a pipe) and the whole
    text is one write, which keeps a 100,000-row table linear and cheap.
    """
    system = None if out.no_color or out.color_system is None else COLOR_SYSTEMS.get(out.color_system)
    lines = [_rstrip(line) for line in lines]
    if system is None:
        text = "\n".join("".join(t for t, _ in line) for line in lines)
    else:
        def paint(t: str, style: Style | None) -> str:
            return style.render(t, color_system=system) if style and t.strip() else t

        text = "\n".join("".join(paint(t, st) for t, st in line) for line in lines)
    out.file.write(text + "\n")
    out.file.flush()


def _rstrip(line: list[tuple[str, Style | None]]) -> list[tuple[str, Style | None]]:
    """A line without its trailing blanks (padding of empty cells at the end)."""
    line = list(line)
    while line and not line[-1][0].strip():
        line.pop()
    if line:
        line[-1] = (line[-1][0].rstrip(), line[-1][1])
    return line


def title_lines(parts: list[str], width: int) -> list[list[tuple[str, Style | None]]]:
    """The title (network name bold), folded between its ' · ' parts to fit the width."""
    name = parts[0].split("  ")[0]
    out = []
    for i, line in enumerate(fold_parts(parts, width)):
        if i == 0 and line.startswith(name):
            out.append([(name, BOLD), (line[len(name):], None)])
        else:
            out.append([(line, None)])
    return out


class _Grid(NamedTuple):
    """A laid-out per-layer table: its columns, which of them stay, their widths and cells (plain
    text, a row per layer), and the width of the name column."""

    chosen: list[Column]
    kept: list[int]
    widths: list[int]
    texts: list[list[str]]
    name_width: int


def render_table(
    report: dict[str, Any], command: str, out: Console, columns: Sequence[str] | None = None,
) -> None:
    """Print the per-layer table and the totals footer for summary/params/flops/shapes.

    Without `columns`, the view's default columns, some dropped (columns.OPTIONAL, CORE_LAST) when
    the terminal is too narrow; with `columns`, exactly those, the names shortened to fit.
    """
    total = dict(report["total"])
    training = report.get("training")
    if training:
        total["backward_macs"] = training["backward_macs"]
    explicit = columns is not None
    names = list(columns if explicit else with_backward(DEFAULTS[command].table, bool(training)))
    chosen = [REGISTRY[n] for n in names]
    rows = report["layers"]
    width = out.width

    # every cell as plain text (names escaped), and each column's width in terminal columns, in one pass
    texts_of = [_texts(c, rows, total) for c in chosen]
    widths = [max([len(c.title)] + [cells(t) for t in texts]) for c, texts in zip(chosen, texts_of)]
    paths = [shown(r["path"]) for r in rows]
    tails = [_tail(r) for r in rows]
    natural = max([len("Layer")] + [2 * r["depth"] + cells(p) + cells(t) for r, p, t in zip(rows, paths, tails)])
    layout = _fit(names, explicit, natural, widths, width)
    grid = _Grid(chosen, layout.kept, widths, texts_of, layout.name_width)

    lines = title_lines(_title_parts(report), width) + [[]] + _header_lines(grid)
    step = 2 if natural <= grid.name_width else 1  # too narrow for every name: one space a level for all rows
    for r, row in enumerate(rows):
        # a row is a block when the next row is deeper (derived: no layer type is named here)
        block = r + 1 < len(rows) and rows[r + 1]["depth"] > row["depth"]
        lines.append(_row_line(grid, r, row, fit_name(row["depth"], paths[r], tails[r], grid.name_width, step), block, total))
    if layout.dropped:
        hidden = ", ".join(chosen[i].title for i in sorted(layout.dropped))
        note = f"hidden to fit {width} columns: {hidden} (see --columns)"
        lines += [[]] + [[(t, DIM)] for t in wrap_tokens(note.split(" "), width)]
    write_lines(out, lines)
    out.print()
    out.print(footer(report, out.width))


def _fit(names: list[str], explicit: bool, natural: int, widths: list[int], width: int) -> Plan:
    """Which columns stay in `width` characters: asked-for ones all, unless even the shortest names
    leave no room (then the end gives way); default ones in the order OPTIONAL, CORE_LAST say."""
    if explicit:
        return plan(natural, widths, width, core=list(reversed(range(len(names)))))
    optional = [names.index(d) for d in OPTIONAL if d in names]
    core = [names.index(d) for d in CORE_LAST if d in names]
    return plan(natural, widths, width, optional, core)


def _title_parts(report: dict[str, Any]) -> list[str]:
    """The title of a per-layer table: name and input, batch, dtype, and the convention counted as."""
    parts = [f"{shown(report['name'])}  input {input_text(report['input'], 'x')}", f"batch {report['batch']}", report["dtype"]]
    if report.get("convention", "layercalc") != "layercalc":
        parts.append(f"counted as {report['convention']}")
    return parts


def _header_lines(grid: _Grid) -> list[list[tuple[str, Style | None]]]:
    """The column titles and the rule under them."""
    header: list[tuple[str, Style | None]] = [(" " * MARGIN + "Layer".ljust(grid.name_width), BOLD)]
    for i in grid.kept:
        c = grid.chosen[i]
        header.append((" " * GAP + (c.title.rjust if _right(c) else c.title.ljust)(grid.widths[i]), BOLD))
    rule = " " * MARGIN + "─" * (line_width(grid.name_width, [grid.widths[i] for i in grid.kept]) - MARGIN)
    return [header, [(rule, None)]]


def _row_line(
    grid: _Grid, r: int, row: dict[str, Any], name: tuple[str, str, str], block: bool, total: dict[str, Any],
) -> list[tuple[str, Style | None]]:
    """Row r of the table: its fitted (indent, path, tail), then each kept cell (a block's dimmed)."""
    indent, path, tail = name
    line: list[tuple[str, Style | None]] = [(" " * MARGIN + indent, None), (path, BOLD if block else None)]
    pad = grid.name_width - len(indent) - cells(path) - cells(tail)
    line.append((tail + " " * pad, DIM_MAGENTA if block else MAGENTA))
    gap = " " * GAP
    for i in grid.kept:
        c, text, w = grid.chosen[i], grid.texts[i][r], grid.widths[i]
        if c.kind == "share":
            line.append((gap, None))
            line += _share_pieces(row, total, c.field, w)
            continue
        style = DIM_ITALIC if text == "not counted" else DIM if (block or text == "—") else None
        line.append((gap + (rjust(text, w) if _right(c) else ljust(text, w)), style))
    return line


def _right(column: Column) -> bool:
    """Numbers align right; shapes, arguments and flags left."""
    return column.kind in ("count", "bytes")


def _tail(row: dict[str, Any]) -> str:
    """What follows a row's path: its type, and for a folded repeat tail the number of copies."""
    return f" {row['type']}" + times(row.get("copies", 1))


def _texts(column: Column, rows: list[dict[str, Any]], total: dict[str, Any]) -> list[str]:
    """Every row's cell of one column as plain text (a share: the bar and its percentage)."""
    if column.kind == "share":
        out = []
        for row in rows:
            s = share(row, total, column.field)
            out.append("".join(_bar_parts(s)) if s else "")
        return out
    return [shown(terminal_cell(column, row)) for row in rows]


def _share_pieces(row: dict[str, Any], total: dict[str, Any], field: str, width: int) -> list[tuple[str, Style | None]]:
    s = share(row, total, field)
    if not s:
        return [(" " * width, None)]
    blocks, percent = _bar_parts(s)
    return [(blocks, CYAN), (percent.ljust(width - len(blocks)), DIM if s < 0.05 else None)]


def footer(report: dict[str, Any], width: int | None = None) -> Table:
    """Totals with exact integers and human units, and memory for the dtype and batch, for a console `width` wide."""
    t = report["total"]
    rows: list[tuple[str, str, str]] = []
    add = rows.append
    add(("Total params", f"{t['params']:,}", human(t["params"])))
    trainable = t.get("trainable_params", t["params"])
    add(("Trainable params", f"{trainable:,}", human(trainable)))
    add(("Frozen params", f"{t['params'] - trainable:,}", "in trainable: false entries"))
    if "active_params" in t:  # a mixture of experts: a token meets its top_k experts only
        add(("Active params", f"{t['active_params']:,}", human(t["active_params"]) + ", what one token passes through"))
    add(("Buffers", f"{t['buffers']:,}", "non-trainable"))
    convention = report.get("convention", "layercalc")
    counted = "" if convention == "layercalc" else f", as {convention} counts"
    if report.get("uncounted"):  # 0 is what the tool prints; say it is not a measured zero
        counted = f", as {convention} prints: it counts none of these layers"
    for key, note in (("macs", ""), ("flops", " (2 per MAC)")):
        value = t[key]
        add((TITLES[key], "not counted" if value is None else f"{value:,}",
             ("" if value is None else human(value)) + note + counted))
    if "input_bytes" in t:
        ids = report.get("input_dtype", report["dtype"]) != report["dtype"] and not isinstance(report["input"], dict)
        add(("Input memory", human_bytes(t["input_bytes"]),
             f"batch {report['batch']}, " + ("int64 token ids" if ids else f"{report['dtype']} values"
                                              if not isinstance(report["input"], dict) else "every named input")))
    add(("Param memory", human_bytes(t["param_bytes"]), report["dtype"]))
    add(("Activation memory", human_bytes(t["activation_bytes"]), f"batch {report['batch']}, forward outputs"))
    if "estimated_total_bytes" in t:
        add(("Estimated total", human_bytes(t["estimated_total_bytes"]), "input + params + activations, inference"))
    if t.get("kv_cache_bytes"):
        # where it comes from: the layers that keep one (the causal ones; some types are causal by default)
        layers = report.get("kv_cache_layers", [])
        sources = ", ".join(f"{s['count']:,} {s['type']}" for s in layers if not s.get("state"))
        states = ", ".join(f"{s['count']:,} {s['type']}" for s in layers if s.get("state"))
        what = f"batch {report['batch']}, keys and values of every position" if sources or not states else \
            f"batch {report['batch']}, a recurrent state of the same size at any length"
        add(("KV cache", human_bytes(t["kv_cache_bytes"]), what
             + (f", kept by the causal layers: {sources} (causal: false for an encoder)" if sources else "")
             + (f"; the state of {states}" if states and sources else f", kept by {states}" if states else "")))
    training = report.get("training")
    if training:
        add(("Backward MACs", f"{training['backward_macs']:,}", human(training["backward_macs"])))
        add(("Training FLOPs", f"{training['training_flops']:,}", "forward + backward, 2 per MAC"))
        add(("Gradients", human_bytes(training["gradient_bytes"]), "one per trainable parameter"))
        add(("Optimizer state", human_bytes(training["optimizer_bytes"]), training["optimizer"]))
        add(("Training memory", human_bytes(training["training_bytes"]),
             "params + gradients + optimizer + kept activations"))
        if "estimated_total_bytes" in training:
            add(("Estimated training total", human_bytes(training["estimated_total_bytes"]),
                 "input + training memory"))
    grid = Table.grid(padding=(0, GAP))
    # labels never wrap or shorten, and exact integers never shorten: on a narrow terminal the
    # notes wrap; only an integer wider than the terminal leaves beside its label (10^300 params)
    # folds onto more lines
    label = max(len(label) for label, _, _ in rows)
    fits = width is None or label + 2 + max(len(value) for _, value, _ in rows) <= width
    grid.add_column(style="bold", no_wrap=True, min_width=label)
    grid.add_column(justify="right", no_wrap=fits, overflow="fold")
    grid.add_column(style="dim")
    for row in rows:
        grid.add_row(*row)
    return grid


def render_compare(data: dict[str, Any], out: Console) -> None:
    """flops --compare: MACs per op category under every convention, totals last.

    Exact integers always; a terminal too narrow for every convention side by side gets them in
    blocks of columns, each block repeating the category column (as NumPy prints wide arrays).
    Only a terminal too narrow for one exact column gets 3-digit units and the exact totals below.
    """
    conventions = list(data["total"])
    width = out.width
    labels = [row["category"] for row in data["rows"]] + ["total"]
    cat_w = max(len(x) for x in ["Category", *labels])
    exact = True
    while True:
        columns = {c: [_compare_cell(row[c], exact) for row in data["rows"]] + [_compare_cell(data["total"][c], exact)]
                   for c in conventions}
        widths = {c: max(len(c), *(len(t) for t in columns[c])) for c in conventions}
        if not exact or all(line_width(cat_w, [w]) <= width for w in widths.values()):
            break
        exact = False
    blocks: list[list[str]] = [[]]
    for c in conventions:
        if blocks[-1] and line_width(cat_w, [widths[k] for k in blocks[-1] + [c]]) > width:
            blocks.append([])
        blocks[-1].append(c)
    title = [f"{shown(data['name'])}  MACs as each tool counts them", f"batch {data['batch']}"]
    lines = title_lines(title, width)
    margin, gap = " " * MARGIN, " " * GAP
    for block in blocks:
        lines.append([])
        lines.append([(margin + "Category".ljust(cat_w), BOLD)] + [(gap + c.rjust(widths[c]), BOLD) for c in block])
        lines.append([(margin + "─" * (line_width(cat_w, [widths[c] for c in block]) - MARGIN), None)])
        for r, label in enumerate(labels):
            last = r == len(labels) - 1
            line: list[tuple[str, Style | None]] = [(margin + label.ljust(cat_w), BOLD if last else None)]
            for c in block:
                text = columns[c][r]
                line.append((gap + text.rjust(widths[c]), DIM if text == "—" else BOLD if last else None))
            lines.append(line)
    lines.append([])
    if not exact:
        totals = [f"{c} {data['total'][c]:,}," for c in conventions if data["total"][c] is not None]
        lines += [[(t.rstrip(","), None)] for t in wrap_tokens(["exact totals:", *totals], width)]
    note = "torch = FlopCounterMode / 2; — = not counted: the tool skips (or warns about) that op"
    lines += [[(t, DIM)] for t in wrap_tokens(note.split(" "), width)]
    write_lines(out, lines)


def _compare_cell(n: int | None, exact: bool) -> str:
    if n is None:
        return "—"
    return f"{n:,}" if exact else human(n).replace(" ", "")


def render_catalog(rows: list[dict[str, Any]], out: Console) -> None:
    """The layer catalog: type, arguments with defaults, what it does.

    Arguments wrap between arguments and the description between words, never inside one; a
    terminal too narrow for both beside the type shows the description under the arguments.
    """
    width = out.width
    type_w = max(len(x) for x in ["Type", *(r["type"] for r in rows)])
    rest = width - line_width(type_w, [0, 0])  # what two more columns share
    side_by_side = rest >= 40
    args_w = max(10, rest * 11 // 20) if side_by_side else max(10, width - line_width(type_w, [0]))
    what_w = rest - args_w if side_by_side else args_w
    margin, gap = " " * MARGIN, " " * GAP
    lines = title_lines(["layercalc layer types"], width) + [[]]
    header = [(margin + "Type".ljust(type_w), BOLD), (gap + "Arguments".ljust(args_w), BOLD)]
    if side_by_side:
        header.append((gap + "What it does", BOLD))
    lines.append(header)
    lines.append([(margin + "─" * (line_width(type_w, [args_w, what_w] if side_by_side else [args_w]) - MARGIN), None)])
    for row in rows:
        # each argument is one token, its comma attached, so a line never breaks inside one
        arguments = [a.replace(" ", "") for a in row["arguments"]] or ["—"]
        args = [(t, None) for t in wrap_tokens([a + "," for a in arguments[:-1]] + arguments[-1:], args_w)]
        what = [(t, DIM) for t in wrap_tokens(row["summary"].split(), what_w)]
        if not side_by_side:  # the description goes under the arguments
            args, what = args + what, []
        for i in range(max(len(args), len(what))):
            text, style = args[i] if i < len(args) else ("", None)
            line: list[tuple[str, Style | None]] = [
                (margin + (row["type"] if i == 0 else "").ljust(type_w), MAGENTA), (gap + text.ljust(args_w), style),
            ]
            if i < len(what):
                line.append((gap + what[i][0], DIM))
            lines.append(line)
    write_lines(out, lines)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr naming the layer being checked; yields advance(name, i, n)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("[cyan]{task.description}"), console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def advance(name: str, i: int, n: int) -> None:
            # the description is markup: a layer named "[red]" or holding ESC is shown as written
            bar.update(task, description=escape(shown(name)), completed=i, total=n)

        yield advance



def page_console(page: Page) -> Console:
    """A Console on page.file, page.width wide (None: its own width)."""
    return console(page.file, page.width)


def write_layers(data: dict[str, Any], page: Page) -> None:
    """summary/params/flops/macs/shapes as the terminal table and its footer."""
    render_table(data, page.command, page_console(page), page.columns)


def write_compare(data: dict[str, Any], page: Page) -> None:
    """flops --compare as the terminal table."""
    render_compare(data, page_console(page))


def write_catalog(data: list[dict[str, Any]], page: Page) -> None:
    """The layer catalog as the terminal table."""
    render_catalog(data, page_console(page))


def render_kconv(data: dict[str, Any], out: Console, err: Console | None = None) -> None:
    """The terminal view: K_conv in column blocks (zeros dimmed) and/or the symbolic view, then the checks.

    A matrix past TABLE_LIMIT is left out: its title is printed, and a note on `err` points to the
    machine formats (the run still succeeds).
    """
    width = out.width

    def say(line: str, style: str = "") -> None:
        out.print(Text(line, style=style), highlight=False, soft_wrap=True)

    if "shape" in data and ("symbolic" not in data or data["symbolic"]["mode"] == "transposed"):
        # with the terms below, their headline names the geometry once
        heading = kc.fill(kc.matrix_title(data), width) if "symbolic" in data else kc.title_lines(data, width)
        for i, line in enumerate(heading):
            say(line, "bold" if i == 0 else "")
        if kc.too_large(data):
            (err or out).print(kc.too_large_note(data), markup=False, highlight=False, soft_wrap=True)
        else:
            for line in kc.matrix_lines(data, width):
                out.print(Text.assemble(*line), highlight=False, soft_wrap=True)
    if "symbolic" in data:
        for line in kc.symbolic_lines(data, width):
            say(line)
        out.print()
    for c in data.get("checks", []):
        mark = "ok  " if c["passed"] else "FAIL"
        first, *rest = kc.fill(kc.check_lines({"checks": [c]})[0], width, indent=5)
        out.print(Text(mark, style="green" if c["passed"] else "bold red"), Text(first[5:]), highlight=False, soft_wrap=True)
        for line in rest:
            say(line)


def write_kconv(data: dict[str, Any], page: Page) -> None:
    """kconv on the terminal; a matrix too large to show is said on page.err."""
    render_kconv(data, page_console(page), console(page.err) if page.err else None)

