"""The per-layer columns every view chooses from: names, titles, and each cell as plain text.

One registry for the terminal table and the machine formats, so `--columns` means the same
everywhere. Plain text only (no Rich): the table adds styles around these strings.
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

from ..errors import UsageError
from ..layers.base import fmt_shape
from .formats import cell, human, human_bytes


class Column(NamedTuple):
    """One field of a row: its --columns name, its table title and how its value reads."""

    name: str  # the --columns name and the machine formats' header
    title: str  # the terminal table's header
    kind: str  # shape | text | count | bytes | share | flag
    field: str  # the row's key (a share: the key it is a share of)


REGISTRY: dict[str, Column] = {c.name: c for c in (
    Column("input_shape", "Input shape", "shape", "input_shape"),
    Column("output_shape", "Output shape", "shape", "output_shape"),
    Column("arguments", "Arguments", "text", "arguments"),
    Column("params", "Params", "count", "params"),
    Column("params_percent", "% Params", "share", "params"),
    Column("buffers", "Buffers", "count", "buffers"),
    Column("macs", "MACs", "count", "macs"),
    Column("flops", "FLOPs", "count", "flops"),
    Column("macs_percent", "% MACs", "share", "macs"),
    Column("activation_bytes", "Activations", "bytes", "activation_bytes"),
    Column("trainable", "Trainable", "flag", "trainable"),
    Column("trainable_params", "Trainable params", "count", "trainable_params"),
    Column("backward_macs", "Backward MACs", "count", "backward_macs"),
)}
# torchinfo's col_names, for people who come from it
ALIASES = {"input_size": "input_shape", "output_size": "output_shape", "kernel_size": "arguments",
           "num_params": "params", "mult_adds": "macs"}
# the identity of a row, first in every machine format (the table shows them as its Layer column)
IDENTITY = ("path", "name", "type", "depth")



class Defaults(NamedTuple):
    """A command's columns when none are asked for, in each view (names of REGISTRY, or count)."""

    table: tuple[str, ...]  # the terminal table, after its Layer column
    machine: tuple[str, ...]  # csv, tsv and markdown, after the IDENTITY columns (JSON carries every field)
    by_type: tuple[str, ...]  # --by-type, after the type


# every command's default columns, in order; when the terminal is narrower than the table needs,
# OPTIONAL ones go first (in this order), then the names shorten, and only when names would fall
# below 16 characters do the CORE_LAST ones go (in this order)
DEFAULTS: dict[str, Defaults] = {
    "summary": Defaults(table=("output_shape", "arguments", "params", "macs", "flops", "macs_percent"),
                        machine=("output_shape", "params", "macs", "flops"),
                        by_type=("count", "params", "macs", "flops")),
    "params": Defaults(table=("output_shape", "params", "buffers", "params_percent"),
                       machine=("params", "trainable_params", "buffers"),
                       by_type=("count", "params", "buffers")),
    "flops": Defaults(table=("output_shape", "macs", "flops", "macs_percent"),
                      machine=("macs", "flops"),
                      by_type=("count", "macs", "flops")),
    "macs": Defaults(table=("output_shape", "macs", "macs_percent"),
                     machine=("macs",),
                     by_type=("count", "macs")),
    "shapes": Defaults(table=("arguments", "input_shape", "output_shape"),
                       machine=("input_shape", "output_shape"),
                       by_type=("count",)),
}
OPTIONAL = ("macs_percent", "params_percent", "flops", "arguments")
CORE_LAST = ("buffers", "output_shape", "input_shape")


def with_backward(columns: tuple[str, ...], training: bool) -> tuple[str, ...]:
    """A view's default columns, and with training the backward pass's MACs after them when the
    view counts MACs (a view of params or shapes stays as it is)."""
    return columns + ("backward_macs",) if training and "macs" in columns else columns


def parse_columns(text: str, training: bool) -> tuple[str, ...]:
    """'params,macs' -> ('params', 'macs'); an unknown or repeated name is a UsageError.

    The identity columns (path, name, type, depth) are accepted anywhere in the list and left out
    of the result: every format shows them first already (the table as its Layer column).
    """
    chosen: list[str] = []
    named: set[str] = set()
    for raw in text.split(","):
        word = raw.strip().lower().replace("-", "_").replace(" ", "_")
        name = ALIASES.get(word, word)
        if name not in REGISTRY and name not in IDENTITY:
            close = difflib.get_close_matches(word, [*REGISTRY, *ALIASES, *IDENTITY], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"--columns: unknown column '{raw.strip()}'{hint}; choose from {', '.join(REGISTRY)}")
        if name in named:
            raise UsageError(f"--columns: '{name}' is named twice")
        if name == "backward_macs" and not training:
            raise UsageError("--columns: backward_macs needs --training")
        named.add(name)
        if name not in IDENTITY:
            chosen.append(name)
    return tuple(chosen)


def json_value(column: Column, row: dict[str, Any], total: dict[str, Any]) -> Any:
    """A row's value for JSON: the row's own field; a share as a percentage of the network total."""
    if column.kind == "share":
        whole, part = total.get(column.field), row.get(column.field)
        return round(100 * part / whole, 4) if whole and part is not None else None
    if column.kind == "flag":
        return bool(row.get(column.field, True))
    return row.get(column.field)


def machine_cell(column: Column, row: dict[str, Any], total: dict[str, Any]) -> str:
    """A row's value for csv/tsv/markdown: exact integers, shapes 1x64x56x56, shares in % to 2 places."""
    if column.kind == "share":
        return share_text(row, total, column.field)
    if column.kind == "flag":
        return "true" if row.get(column.field, True) else "false"
    return cell(row, column.field)


def share(row: dict[str, Any], total: dict[str, Any], field: str) -> float | None:
    """The row's share of the network's total (None when either is not counted or the total is 0)."""
    part, whole = row.get(field), total.get(field)
    if part is None or not whole:
        return None
    return part / whole


def share_text(row: dict[str, Any], total: dict[str, Any], field: str) -> str:
    """A share as a percentage with 2 decimals ('6.51'); empty when not counted."""
    s = share(row, total, field)
    return "" if s is None else f"{100 * s:.2f}"


def terminal_cell(column: Column, row: dict[str, Any]) -> str:
    """A row's value for the terminal table (shares are drawn by the table itself)."""
    value = row.get(column.field, True if column.kind == "flag" else None)
    if column.kind == "flag":
        return "yes" if value else "no"
    if column.kind == "shape":
        return fmt_shape(value)
    if column.kind == "text":
        return value or ""
    if value is None:
        return "not counted"
    if not value:
        return "—"
    return human_bytes(value) if column.kind == "bytes" else human(value)
