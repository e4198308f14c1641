"""May import: errors, layers.base.

Renderers: every view of a result (per-layer rows, by type, compare, the catalog, one type,
verify's checks, kconv) in every format, found by (view, format) in RENDERERS.

A renderer is a function (data, page) -> None: it writes the view of `data` (plain JSON-ready
data) to page.file. Modules are named, not imported, here: the terminal table needs Rich, which
the machine formats never load.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple, TextIO

FORMATS = ("table", "json", "csv", "tsv", "markdown", "html")  # table and html for people, the rest for programs
TEXT_FORMATS = ("csv", "tsv", "markdown")


class Page(NamedTuple):
    """Where and how a view is written; each view reads the fields it has a use for."""

    format: str  # one of FORMATS
    file: TextIO  # the result
    err: TextIO | None = None  # notes beside the result (verify's summary with a machine format); None: file
    width: int | None = None  # a table's width in characters; None: the console's own (COLUMNS, the terminal, 80)
    command: str = "summary"  # whose columns the per-layer and by-type views show (columns.DEFAULTS)
    columns: tuple[str, ...] | None = None  # the per-layer columns asked for; None: the command's defaults
    every: bool = False  # verify's table: every check, not only the failed ones
    notes: tuple[str, ...] = ()  # lines for err after the result (verify: a user's code that raised)

    @property
    def notes_file(self) -> TextIO:
        """Where notes go: err, or the result's own stream when there is no other."""
        return self.err or self.file


def _text(renderer: str) -> dict[str, str]:
    """csv, tsv and markdown share one renderer (it reads page.format)."""
    return {fmt: renderer for fmt in TEXT_FORMATS}


# view -> format -> "module.function" in this package, a Renderer
RENDERERS: dict[str, dict[str, str]] = {
    "layers": {"table": "table.write_layers", "json": "machine.write_layers", **_text("machine.write_layers"),
               "html": "html.write_layers"},
    "types": {"table": "types.write_by_type", "json": "machine.write_json", **_text("machine.write_by_type")},
    "compare": {"table": "table.write_compare", "json": "machine.write_json", **_text("machine.write_compare")},
    "catalog": {"table": "table.write_catalog", "json": "machine.write_json", **_text("machine.write_catalog")},
    "type": {"table": "types.write_type", "json": "machine.write_json_unicode", **_text("machine.write_type")},
    "checks": {"table": "checks.write_checks", "json": "machine.write_checks_json", **_text("machine.write_checks")},
    "kconv": {"table": "table.write_kconv", "json": "kconv.write_json", **_text("kconv.write_text"),
              "html": "kconv_html.write_page"},
    "serve": {"table": "plans.write_serve", "json": "machine.write_json_unicode", **_text("plans.write_serve"),
              "html": "html.write_plan"},
    "train": {"table": "plans.write_train", "json": "machine.write_json_unicode", **_text("plans.write_train"),
              "html": "html.write_plan"},
    "search": {"table": "plans.write_search", "json": "machine.write_json_unicode", **_text("plans.write_search")},
    "gpus": {"table": "plans.write_gpus", "json": "machine.write_json_unicode", **_text("plans.write_gpus")},
    "sweep": {"table": "plot.write_sweep", "json": "machine.write_json", **_text("plot.write_sweep")},
}
VIEW_NAMES = {"types": "--by-type", "compare": "--compare", "catalog": "the layer catalog", "type": "a layer type",
              "checks": "verify", "search": "--search", "gpus": "the GPU presets", "sweep": "--sweep"}

Renderer = Callable[[Any, Page], None]


def renderer(view: str, format: str) -> Renderer:
    """The function that writes `view` in `format`; UsageError for a format the view does not offer."""
    if format not in RENDERERS[view]:
        from ..errors import UsageError

        offered = ", ".join(RENDERERS[view])
        what = VIEW_NAMES.get(view, view)
        raise UsageError(f"--format {format} is not offered for {what}; it writes {offered}")
    module, _, name = RENDERERS[view][format].partition(".")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def write(view: str, data: Any, page: Page) -> None:
    """Write `data` as `view` in page.format to page.file."""
    renderer(view, page.format)(data, page)


def write_notes(page: Page) -> None:
    """page.notes, one a line, on page.err."""
    for note in page.notes:
        print(note, file=page.notes_file)


__all__ = ["FORMATS", "Page", "RENDERERS", "Renderer", "renderer", "write", "write_notes"]
