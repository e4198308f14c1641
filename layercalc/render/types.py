"""Views by layer type as Rich tables that fit 80 columns: `--by-type` (one row per type) and
`layercalc layers TYPE` (one type in detail); their machine formats are in machine.py."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from . import Page
from .formats import human, shorten_middle, shown
from .layout import GAP
from .machine import argument_default, argument_note, by_type_columns, type_totals
from .table import footer, page_console

TITLES = {"count": "Count", "params": "Params", "buffers": "Buffers", "macs": "MACs", "flops": "FLOPs",
          "backward_macs": "Backward", "training_macs": "Training"}
SHARES = ("params", "macs")  # the table shows each type's share of these totals

def _share(part: int | None, whole: int | None) -> Text:
    if not part or not whole:
        return Text("")
    share = part / whole
    return Text(f"{share * 100:.1f}%", style="dim" if share < 0.05 else "")


def _number(n: int | None) -> Text:
    if n is None:
        return Text("—", style="dim")
    return Text(human(n) if n else "0", style="" if n else "dim")


def render_by_type(data: dict[str, Any], command: str, out: Console) -> None:
    """--by-type as a table: one row per layer type with its share of params and MACs; footer below.

    It fits the console: FLOPs (2 per MAC, as the footer says) go first, then long type names
    are shortened in the middle."""
    numbers = [c for c in by_type_columns(data, command) if c != "count"]
    # assembled, not markup: a network named "[red]" or "\x1b]0;x\x07" is shown as written
    title = Text.assemble((shown(data["name"]), "bold"), f" by layer type · batch {data['batch']}")
    if data.get("convention", "layercalc") != "layercalc":
        title.append_text(Text.assemble(" · counted as ", (data["convention"], "bold")))
    table = _by_type_table(data, numbers, None)
    if "flops" in numbers and _natural_width(table, out) > out.width:
        numbers.remove("flops")
        table = _by_type_table(data, numbers, None)
    excess = _natural_width(table, out) - out.width
    if excess > 0:
        longest = max(len(r["type"]) for r in data["types"])
        table = _by_type_table(data, numbers, max(8, longest - excess))
    out.print(title)  # above the table, not its title: a narrow table would wrap it
    out.print(table)
    if any(r.get(key) is None for r in data["types"] for key in numbers):
        out.print(Text(f"— = not counted: {data['convention']} skips these layers", style="dim"))
    out.print(footer(data, out.width))


def _natural_width(table: Table, out: Console) -> int:
    """The width the table takes when nothing limits it."""
    return Measurement.get(out, out.options.update(max_width=10_000), table).maximum


def _by_type_table(data: dict[str, Any], numbers: list[str], type_width: int | None) -> Table:
    total = type_totals(data)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Type", no_wrap=True, style="magenta")
    table.add_column("Count", justify="right", no_wrap=True)
    for key in numbers:
        table.add_column(TITLES[key], justify="right", no_wrap=True)
        if key in SHARES:
            table.add_column("%", justify="right", no_wrap=True)
    rows = [(row, None) for row in data["types"]] + [(dict(total, type="total"), "bold")]
    for i, (row, style) in enumerate(rows):
        name = row["type"] if type_width is None else shorten_middle(row["type"], type_width)
        cells: list[Any] = [name, f"{row['count']:,}"]
        for key in numbers:
            cells.append(_number(row.get(key)))
            if key in SHARES:
                cells.append(_share(row.get(key), total.get(key)))
        table.add_row(*cells, style=style, end_section=i == len(rows) - 2)
    return table


def _grid() -> Table:
    grid = Table.grid(padding=(0, GAP))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    return grid


def render_type(data: dict[str, Any], out: Console) -> None:
    """`layers TYPE`: arguments, the rules, each tool's rule, and a worked example."""
    out.print(Text.assemble((data["type"], "bold magenta"), " — ", data["summary"]))
    args = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    args.add_column("Name", no_wrap=True)
    args.add_column("Default", no_wrap=True)
    args.add_column("Meaning", overflow="fold", style="dim")
    for a in data["arguments"]:
        args.add_row(a["name"], shorten_middle(argument_default(a), 16), argument_note(a))
    if data["arguments"]:
        out.print(Text("Arguments (PyTorch names and defaults)", style="bold"))
        out.print(args)
    else:
        out.print(Text("No arguments.", style="dim"))
    rules = _grid()
    for key, label in (("shape", "Shape"), ("params", "Params"), ("buffers", "Buffers"), ("macs", "MACs"),
                       ("flops", "FLOPs")):
        rules.add_row(label, data["rules"][key])
    out.print(Text("Rules (N batch, x input, y output, numel = elements)", style="bold"))
    out.print(rules)
    tools = _grid()
    for tool, text in data["conventions"].items():
        tools.add_row(tool, text)
    out.print(Text("\nAs each tool counts it (MACs; torch = FlopCounterMode / 2)", style="bold"))
    out.print(tools)
    ex = data["example"]
    shown = json.dumps(ex["arguments"]) if ex["arguments"] else "defaults"
    out.print(Text(f"\nExample: {data['type']} {shown} on input {'x'.join(map(str, ex['input_shape']))}",
                   style="bold"))
    example = _grid()
    example.add_row("Output", "x".join(map(str, ex["output_shape"])))
    example.add_row("Params", f"{ex['params']:,}" + (f" (buffers {ex['buffers']:,})" if ex["buffers"] else ""))
    example.add_row("MACs", f"{ex['macs']:,} (FLOPs {ex['flops']:,})")
    counted = ", ".join(f"{tool} {'—' if n is None else f'{n:,}'}" for tool, n in ex["conventions"].items()
                        if tool != "layercalc")
    example.add_row("As counted", counted)
    out.print(example)


def write_by_type(data: dict[str, Any], page: Page) -> None:
    """--by-type as the terminal table."""
    render_by_type(data, page.command, page_console(page))


def write_type(data: dict[str, Any], page: Page) -> None:
    """`layers TYPE` on the terminal."""
    render_type(data, page_console(page))
