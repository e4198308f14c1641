"""Fitting a table to the terminal: which columns stay, how wide each is, how long names shorten.

Plain text arithmetic, no Rich: column widths come from the content in one pass over the rows,
measured in terminal columns (a CJK character takes two),
so a table of 100,000 rows costs what its text costs, and no cell ever wraps.
Rules: columns are separated by GAP spaces after a one-space margin; when the table is wider than
the terminal, the optional columns go first (in a fixed order), then the names shorten in the
middle ("layer4.…conv2"), and only when a name would fall below NAME_MIN do core columns go.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from .formats import TIMES, shorten_middle, width as cells

MARGIN = 1  # spaces before the first column
GAP = 2  # spaces between columns
NAME_MIN = 16  # a name column narrower than this costs a core column instead
PATH_MIN = 8  # a shortened path keeps at least this many characters (with its "…")


class Plan(NamedTuple):
    """The columns that stay (indices into the candidates) and the width of the name column."""

    kept: list[int]
    name_width: int
    dropped: list[int]


def line_width(name_width: int, widths: Sequence[int]) -> int:
    """Characters of one line: margin, the name column, then each column after a gap."""
    return MARGIN + name_width + sum(GAP + w for w in widths)


def plan(
    name_natural: int, widths: Sequence[int], width: int, optional: Sequence[int] = (), core: Sequence[int] = (),
) -> Plan:
    """Fit a name column and columns of `widths` into `width` characters.

    `optional` (indices, first to go first) are dropped before any name shortens; `core` (first to
    go first) only when the names would have to shrink below NAME_MIN; other columns always stay.
    """
    kept = list(range(len(widths)))
    dropped: list[int] = []

    def need(name: int) -> int:
        return line_width(name, [widths[i] for i in kept])

    for i in optional:  # extras go before any name is cut
        if need(name_natural) <= width:
            break
        kept.remove(i)
        dropped.append(i)
    floor = min(name_natural, NAME_MIN)
    for i in core:  # a readable name is worth more than one more column
        if need(floor) <= width:
            break
        kept.remove(i)
        dropped.append(i)
    room = width - need(0)
    return Plan(kept, max(1, min(name_natural, room)), dropped)


def fit_name(depth: int, path: str, tail: str, width: int, step: int = 2) -> tuple[str, str, str]:
    """(indent, path, tail) of at most `width` characters in all, tail = ' type ×copies'.

    The indent is `step` spaces a level (a table whose names do not all fit uses 1: the dots of
    the path still say how deep it is); then the path shortens in the middle (both ends stay:
    where it sits and what it is), down to PATH_MIN; then the indent goes; then the tail shortens.
    """
    indent = step * depth
    if indent + cells(path) + cells(tail) <= width:
        return " " * indent, path, tail
    keep = min(cells(path), PATH_MIN)
    if width - indent - cells(tail) < keep:
        indent = max(0, width - cells(tail) - keep)
    room = width - indent - cells(tail)
    if room >= keep:
        return " " * indent, shorten_middle(path, room), tail
    path = shorten_middle(path, min(keep, width))
    rest = width - cells(path)
    kind, sep, copies = tail.partition(TIMES)
    copies = sep + copies  # a folded repeat's count outlives its type: it is a number
    if copies and rest >= cells(copies):
        room = rest - cells(copies)
        return "", path, (" " + shorten_middle(kind.lstrip(), room - 1) if room >= 2 else "") + copies
    return "", path, (" " + shorten_middle(tail.lstrip(), rest - 1)) if rest >= 2 else ""


def wrap_tokens(tokens: Sequence[str], width: int, sep: str = " ") -> list[str]:
    """Pack tokens (whole arguments, whole words) into lines of at most `width`; a token longer
    than a line is shortened in the middle rather than broken across lines."""
    lines: list[str] = []
    current = ""
    for token in tokens:
        token = shorten_middle(token, width)
        if current and cells(current) + len(sep) + cells(token) <= width:
            current += sep + token
        else:
            if current:
                lines.append(current)
            current = token
    if current or not lines:
        lines.append(current)
    return lines


def fold_parts(parts: Sequence[str], width: int, sep: str = " · ") -> list[str]:
    """A title of parts joined by `sep`, folded between parts so no line exceeds `width`."""
    return wrap_tokens(parts, width, sep) if parts else []
