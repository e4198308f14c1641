"""Which options a report takes together: every refusal of a value or a combination, for the
command line and the Python API alike, each message naming the options as its caller spells them."""

from __future__ import annotations

import math
from typing import Callable, Sequence

from .config import suggest
from .conventions import OPTIMIZER_STATES
from .errors import UsageError
from .layers.peers import CHOICES, TRAINING_CONVENTIONS
from .render import FORMATS
from .render.columns import DEFAULTS, parse_columns

OPTIMIZERS = tuple(OPTIMIZER_STATES)  # sgd, momentum, adam: the names the training cost knows
Spelling = Callable[[str], str]  # an option's name ('by_type') as its caller writes it


def keyword(name: str) -> str:
    """'by_type': an option as the Python API's keyword names it."""
    return name


def flag(name: str) -> str:
    """'--by-type': an option as the command line names it."""
    return "--" + name.replace("_", "-")


def check_report_options(
    spell: Spelling = keyword, *, command: str = "summary", batch: int | None = None, depth: int | None = None,
    convention: str = "layercalc", training: bool = False, optimizer: str | None = None, by_type: bool = False,
    compare: bool = False, columns: str | Sequence[str] | None = None, format: str | None = None,
    total: bool = False, macs: bool = False, trainable: bool = False,
) -> None:
    """Refuse, with a UsageError naming the options, a value out of range or an unknown name, and
    options that would be silently ignored or mixed; the first conflict found is the one named.

    `total`, `macs` and `trainable` are the command line's (a bare integer); `columns` as --columns
    takes it ('params,macs') or a list of names.
    """
    _check_names(spell, command, convention, optimizer, format)
    _check_ranges(spell, batch, depth)
    _check_total(spell, total, macs, trainable)
    if optimizer is not None and not training:
        raise UsageError(f"{spell('optimizer')} goes with {spell('training')} (it sets the optimizer state a training step holds)")
    if compare:
        _check_compare(spell, convention, training, total, depth, columns)
    if training and convention not in TRAINING_CONVENTIONS:
        raise UsageError(
            f"{spell('training')} counts the backward pass as autograd runs it; {convention} counts only the forward"
            f" pass, so use {spell('convention')} {', '.join(TRAINING_CONVENTIONS[:-1])} or {TRAINING_CONVENTIONS[-1]}"
            f" with {spell('training')}"
        )
    if total and format is not None:
        raise UsageError(f"{spell('total')} prints a bare integer; it does not combine with {spell('format')}")
    if columns is not None and total:
        raise UsageError(f"{spell('columns')} chooses a table's columns; it does not combine with {spell('total')} (a bare integer)")
    if by_type:
        _refuse_with(spell, "by_type", "gives one row per layer type", total=total, compare=compare,
                     depth=depth is not None, columns=columns is not None)
    if columns is not None:
        parse_columns(columns if isinstance(columns, str) else ",".join(columns), training)


def _check_names(spell: Spelling, command: str, convention: str, optimizer: str | None, format: str | None) -> None:
    """A view, convention, optimizer and format layercalc knows (the command line's choices are these)."""
    for option, value, known in (("command", command, DEFAULTS), ("convention", convention, CHOICES),
                                 ("optimizer", optimizer, OPTIMIZERS), ("format", format, FORMATS)):
        if value is not None and value not in known:
            raise UsageError(f"unknown {spell(option)} {value!r}{suggest(value, known)}")


def _check_ranges(spell: Spelling, batch: int | None, depth: int | None) -> None:
    """A batch of at least one sample; a depth of at least 0 (the network's own row)."""
    if batch is not None and batch < 1:
        raise UsageError(f"{spell('batch')} must be >= 1, got {batch}")
    if depth is not None and depth < 0:
        raise UsageError(f"{spell('depth')} must be >= 0, got {depth}")


def _check_total(spell: Spelling, total: bool, macs: bool, trainable: bool) -> None:
    """--macs and --trainable choose which bare integer --total prints."""
    if macs and not total:
        raise UsageError(f"{spell('macs')} goes with {spell('total')} (the table and machine formats show MACs and FLOPs)")
    if trainable and not total:
        raise UsageError(f"{spell('trainable')} goes with {spell('total')} (the table and machine formats show trainable and frozen params)")


def _check_compare(spell: Spelling, convention: str, training: bool, total: bool, depth: int | None, columns: object) -> None:
    """compare shows every convention's forward pass, whole; nothing narrows or changes it."""
    _refuse_with(spell, "compare", "shows every convention's forward pass", convention=convention != "layercalc",
                 training=training, total=total, depth=depth is not None, columns=columns is not None)


def _refuse_with(spell: Spelling, option: str, does: str, **given: bool) -> None:
    """UsageError naming the first of the `given` options that is on, as not combining with `option`."""
    clash = [name for name, on in given.items() if on]
    if clash:
        raise UsageError(f"{spell(option)} {does}; it does not combine with {spell(clash[0])}")


def check_verify_options(seed: int, rtol: float | None, atol: float | None) -> None:
    """A seed NumPy accepts and tolerances a check can be held to: refused by name otherwise (a
    negative or nan tolerance fails every check, an infinite one passes every check)."""
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    for option, value in (("--rtol", rtol), ("--atol", atol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be a finite number >= 0, got {value:g}")


def check_kconv_options(draw: str | None, frames: bool) -> None:
    """--frames changes how --draw draws; alone it would be silently ignored."""
    if frames and draw is None:
        raise UsageError("--frames goes with --draw FILE.svg")
