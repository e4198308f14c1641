"""Machine formats (json, csv, tsv, markdown) and number formatting; plain text, no Rich.

Machine formats carry exact integers, no units, no colour and one header row.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from decimal import Decimal
from typing import Any, Iterable, Sequence

from ..errors import one_line
from ..layers.base import fmt_shape

# the columns each calculating command shows, in order (JSON always carries every field)
COLUMNS: dict[str, tuple[str, ...]] = {
    "summary": ("path", "name", "type", "depth", "output_shape", "params", "macs", "flops"),
    "params": ("path", "name", "type", "depth", "params", "trainable_params", "buffers"),
    "flops": ("path", "name", "type", "depth", "macs", "flops"),
    "macs": ("path", "name", "type", "depth", "macs"),
    "shapes": ("path", "name", "type", "depth", "input_shape", "output_shape"),
}
CHECK_COLUMNS = ("path", "name", "type", "check", "method", "error", "tolerance", "passed", "note")


# decimal prefixes up to exa (a 10^18 count still reads "1.00 E"); bytes use the same: MB = 10^6 bytes
SI_PREFIXES = ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "K"))
PAST_PREFIXES = 10**22  # from 10,000 E on, a count is written as 1.00e22: its digits would be a column


def _scaled(n: int | float, power: int, digits: int | None) -> str:
    """n / 10^power with `digits` decimals (None: 3 significant digits), worked in Decimal so that
    an integer of any size is rounded exactly and never converted to a float (10^400 overflows one)."""
    value = Decimal(n).scaleb(-power)
    if digits is None:
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f}"


def _scientific(n: int | float) -> str:
    """1.00e22: three significant digits and the power of ten."""
    mantissa, _, exponent = f"{Decimal(n):.2e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def human(n: float, unit: str = "") -> str:
    """11689512 -> '11.7 M', 1814073856 -> '1.81 G': three significant digits, SI prefixes; 1.00e22 past 9,999 E."""
    # rounded to 3 significant digits (exactly, in Decimal) before the prefix and decimals are
    # chosen, so that a carry moves on to them: 9,999 reads '10.0 K' (not '10.00 K'), 999,999 '1.00 M'
    rounded = Decimal(f"{Decimal(n):.3g}") if abs(n) >= 10 ** SI_PREFIXES[-1][0] else n
    if abs(rounded) >= PAST_PREFIXES:
        return f"{_scientific(n)} {unit}".rstrip()
    for power, prefix in SI_PREFIXES:
        if abs(rounded) >= 10**power:
            return f"{_scaled(rounded, power, None)} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip() if isinstance(n, float) else f"{n} {unit}".rstrip()


def human_bytes(n: int) -> str:
    """Bytes in decimal MB/GB (10^6, 10^9), as torchinfo shows them: 46758048 -> '46.76 MB'."""
    if n >= PAST_PREFIXES:
        return f"{_scientific(n)} B"
    for power, prefix in SI_PREFIXES:
        if n >= 10**power:
            return f"{_scaled(n, power, 2)} {prefix}B"
    return f"{n} B"


def shown(text: str) -> str:
    """A name as a terminal or a row of text may hold it: control and format characters (ESC, OSC,
    BEL, NUL, CR, newline, tab, C1, bidi overrides) escaped as the error messages escape them."""
    return text if text.isprintable() else one_line(text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def width(text: str) -> int:
    """Terminal columns of text: East Asian wide and fullwidth characters take two, combining marks none."""
    return len(text) if text.isascii() else sum(map(_char_width, text))


def ljust(text: str, columns: int) -> str:
    """text padded on the right to `columns` terminal columns."""
    return text + " " * (columns - width(text))


def rjust(text: str, columns: int) -> str:
    """text padded on the left to `columns` terminal columns."""
    return " " * (columns - width(text)) + text


def _take(chars: Any, columns: int) -> str:
    """The longest run of chars (in order) that fits `columns` terminal columns."""
    out, used = [], 0
    for ch in chars:
        used += _char_width(ch)
        if used > columns:
            break
        out.append(ch)
    return "".join(out)


def shorten_middle(text: str, columns: int) -> str:
    """'layer4.1.body.conv2' -> 'layer4.…conv2' when it must fit `columns` terminal columns: both ends stay."""
    if width(text) <= columns:
        return text
    if columns <= 1:
        return "…"[:columns]
    head = columns // 2  # the head (where a path starts) gets the odd column
    tail = columns - 1 - head
    return _take(text, head) + "…" + (_take(reversed(text), tail)[::-1] if tail else "")


def cell(row: dict[str, Any], column: str) -> str:
    """A row's value as plain text: shapes as 1x64x56x56, integers exact, not counted = empty."""
    value = row.get(column, "")
    if isinstance(value, list):
        return fmt_shape(value)
    return "" if value is None else str(value)


def render_machine(fmt: str, report_dict: dict[str, Any], command: str, columns: Sequence[str] | None = None) -> str:
    """The report in a machine format; `report_dict` is api.report_data(), `columns` names from
    render.columns (default: COLUMNS[command], plus backward_macs with --training)."""
    from .columns import IDENTITY, REGISTRY, json_value, machine_cell

    if fmt == "json":
        if columns is not None:  # each row: where it is, then the fields asked for, in that order
            chosen = [REGISTRY[c] for c in columns]
            total = report_dict["total"]
            layers = [{**{k: r[k] for k in IDENTITY}, **{c.name: json_value(c, r, total) for c in chosen}}
                      for r in report_dict["layers"]]
            report_dict = {**report_dict, "layers": layers}
        return json.dumps(report_dict, indent=2) + "\n"

    total = dict(report_dict["total"])
    if "training" in report_dict:
        total["backward_macs"] = report_dict["training"]["backward_macs"]
    if columns is None:
        columns = COLUMNS[command][len(IDENTITY):] + (("backward_macs",) if "training" in report_dict else ())
    chosen = [REGISTRY[c] for c in columns]
    rows = [[cell(r, c) for c in IDENTITY] + [machine_cell(c, r, total) for c in chosen] for r in report_dict["layers"]]
    # the total row carries the counts that have a network total (shapes and shares have none)
    totals = [cell(total, c.name) if c.kind in ("count", "bytes") and c.name in total else "" for c in chosen]
    if any(totals):
        rows.append(["total", "", "", ""] + totals)
    return table_text(fmt, (*IDENTITY, *columns), rows)


def compare_text(fmt: str, data: dict[str, Any]) -> str:
    """flops --compare as csv/tsv/markdown: a row per op category, a column per convention."""
    conventions = list(data["total"])
    rows = [[r["category"]] + [cell(r, c) for c in conventions] for r in data["rows"]]
    rows.append(["total"] + [cell(data["total"], c) for c in conventions])
    return table_text(fmt, ["category", *conventions], rows)


def table_text(fmt: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A header and rows as csv, tsv or a markdown pipe table."""
    # a name's newline or tab would end a row or a cell, its ESC or bidi override act on the
    # terminal that shows the rows: escaped, one row a line whatever the names hold
    rows = ([shown(c) for c in r] for r in rows)
    if fmt == "markdown":
        lines = ["| " + " | ".join(map(_md, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(map(_md, r)) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _md(text: str) -> str:
    """A markdown table cell: a '|' in a name would end the cell, a backslash would escape the next character."""
    return text.replace("\\", "\\\\").replace("|", "\\|")


def catalog_text(fmt: str, rows: list[dict[str, Any]]) -> str:
    """The layer catalog as csv/tsv/markdown."""
    return table_text(fmt, ("type", "arguments", "summary"), ([r["type"], " ".join(r["arguments"]), r["summary"]] for r in rows))


def json_rows(data: dict[str, Any], key: str) -> str:
    """The JSON document indented, except each item of data[key] on one line of its own: a
    million matrix entries or verify's thousands of checks stay as many lines, and the
    standard library's C encoder writes them (its indenting encoder is pure Python)."""
    if key not in data:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    marker = f"@@{key}@@"
    text = json.dumps({**data, key: marker}, indent=2, ensure_ascii=False)
    rows = ",\n".join("    " + json.dumps(row, ensure_ascii=False) for row in data[key])
    return text.replace(json.dumps(marker), "[\n" + rows + "\n  ]" if rows else "[]", 1) + "\n"


def checks_json(result: dict[str, Any]) -> str:
    """verify's result as JSON, one check a line."""
    return json_rows(result, "results")


def checks_text(fmt: str, result: dict[str, Any]) -> str:
    """verify's checks as csv/tsv/markdown, one row each."""
    return table_text(fmt, CHECK_COLUMNS, ([str(c[k]) for k in CHECK_COLUMNS] for c in result["results"]))
