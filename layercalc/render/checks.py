"""verify's report for people: a table of checks that fits the terminal, the failures' notes, the
skipped checks and one summary line.

The table never wraps a cell: below the width it needs it drops the Method column first, then
shortens the layer paths and check names in the middle ("layer4.…conv2"), both ends kept.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import Page, write_notes
from .formats import shorten_middle, shown as plain, times, width as cells
from .table import page_console

MARK, ERROR, TOLERANCE = 4, 7, 9  # widths: "FAIL", "2.0e-11", "Tolerance"
MIN_PATH = 8  # below this a shortened path stops being readable


def _overhead(columns: int) -> int:
    """Characters a SIMPLE_HEAD table without edges adds to its columns: one space of padding on
    each inner side and one divider between columns."""
    return 3 * (columns - 1)


def _widths(rows: list[dict[str, Any]], width: int) -> tuple[bool, int, int, int]:
    """(show Method?, path width, check width, method width) for a table no wider than width."""
    path = max([len("Layer"), *(cells(_layer(c)) for c in rows)])
    check = max([len("Check"), *(len(c["check"]) for c in rows)])
    method = max([len("Method"), *(len(c["method"]) for c in rows)])
    fixed = MARK + ERROR + TOLERANCE
    if fixed + path + check + method + _overhead(6) <= width:
        return True, path, check, method
    room = width - fixed - _overhead(5)  # without Method: what the two names may share
    if path + check <= room:
        return False, path, check, 0
    # both shortened in proportion to their lengths, the path to no less than MIN_PATH
    p = min(path, max(MIN_PATH, room * path // (path + check)))
    tail = max((len(_layer(c)) - len(c["path"]) for c in rows), default=0)
    if tail:  # room for a folded row's count of copies, whole, beside four characters of its path
        p = min(path, max(p, min(tail + 4, room - MIN_PATH)))
    c = max(1, min(check, room - p))
    return False, max(1, p), max(1, c), 0


def render_checks(result: dict[str, Any], out: Console, every: bool = False) -> None:
    """verify's checks: every row (every=True) or the failed ones only, each with its error
    against its tolerance; the failures' notes below, the skipped checks, the summary line."""
    shown = [c for c in result["results"] if every or not c["passed"]]
    title = Text(f"verify {plain(result['name'])}", style="bold")
    out.print(title, overflow="fold")
    if shown:
        _table(shown, out)
    for c in result["results"]:
        if not c["passed"]:
            line = f"FAIL {_layer(c)} ({c['type']}) {c['check']}: error {c['error']:.3g} > tolerance {c['tolerance']:.3g}"
            out.print(Text(line + (f"; {c['note']}" if c["note"] else ""), style="red"), overflow="fold")
    for s in result.get("skipped", []):
        out.print(Text(f"SKIPPED {plain(s['path'])} ({s['type']}) {s['check']}: {s['reason']}", style="yellow"), overflow="fold")
    failed = result["failed"]
    summary = result.get("summary", f"{result['checks']} checks, {failed} failed")
    out.print(Text(summary, style="bold red" if failed else "bold green"), overflow="fold")


def _table(rows: list[dict[str, Any]], out: Console) -> None:
    method, path_w, check_w, method_w = _widths(rows, out.width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True, width=MARK)
    table.add_column("Layer", no_wrap=True, width=path_w)
    table.add_column("Check", no_wrap=True, width=check_w)
    if method:
        table.add_column("Method", style="dim", no_wrap=True, width=method_w)
    table.add_column("Error", justify="right", no_wrap=True, width=ERROR)
    table.add_column("Tolerance", justify="right", no_wrap=True, width=TOLERANCE)
    for c in rows:
        mark = Text("ok", style="green") if c["passed"] else Text("FAIL", style="bold red")
        exact = c["method"] == "exact"
        error = "" if exact and c["passed"] else _number(c["error"])
        cells = [mark, _layer_cell(c, path_w), shorten_middle(c["check"], check_w)]
        if method:
            cells.append(c["method"])
        cells += [error, "" if exact else _number(c["tolerance"])]
        table.add_row(*cells)
    out.print(table)


def _layer(c: dict[str, Any]) -> str:
    """A row's path, and for a row that stands for identical repeat copies their number, as the
    calculator's table shows a folded repeat: 'blocks.1-999 ×999'."""
    return plain(c["path"]) + times(c.get("copies", 1))


def _layer_cell(c: dict[str, Any], width: int) -> str:
    """_layer(c) in at most width characters: the path shortened in the middle, the count of copies
    kept whole (a number cut short would misstate it) while the path keeps both its ends."""
    path = plain(c["path"])
    tail = _layer(c)[len(path):]
    if tail and width - len(tail) >= 4:
        return shorten_middle(path, width - len(tail)) + tail
    return shorten_middle(_layer(c), width)


def _number(x: float) -> str:
    """An error or tolerance in at most 7 characters: 2.0e-11, inf."""
    text = f"{x:.1e}"
    return text if len(text) <= ERROR else f"{x:.0e}"


def write_checks(data: dict[str, Any], page: Page) -> None:
    """verify's checks as the terminal view (every check with page.every); the notes on page.err."""
    render_checks(data, page_console(page), every=page.every)
    write_notes(page)
