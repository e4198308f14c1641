"""Plain text for every view: numbers in human units, names escaped and measured in terminal
columns, a cell of a row, a repeat's ×N, and csv/tsv/markdown/JSON text; no Rich.

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


TIMES = " ×"  # between a name and the number of identical copies it stands for


def times(copies: int) -> str:
    """' ×1,000' after a name that stands for that many identical copies; '' for one."""
    return f"{TIMES}{copies:,}" if copies > 1 else ""


def cell(row: dict[str, Any], column: str) -> str:
    """A row's value as plain text: shapes as 1x64x56x56, integers exact, not counted = empty."""
    value = row.get(column, "")
    if isinstance(value, list):
        return fmt_shape(value)
    return "" if value is None else str(value)


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


def input_text(shape: Any, sep: str) -> str:
    """One sample's input shape as text: 3x224x224, or each named input's ('audio 80x3000, tokens 128')."""
    if isinstance(shape, dict):
        return ", ".join(f"{name} {sep.join(map(str, dims))}" for name, dims in shape.items())
    return sep.join(map(str, shape))
