"""The machine formats of each view (json, csv, tsv, markdown) as text: exact integers, no units,
no colour, one header row."""

from __future__ import annotations

import json
from typing import Any, Sequence

from .columns import DEFAULTS, IDENTITY, REGISTRY, json_value, machine_cell, with_backward
from . import Page, write_notes
from .formats import cell, json_rows, table_text

CHECK_COLUMNS = ("path", "name", "type", "check", "method", "error", "tolerance", "passed", "note")
TOOLS = {"torch": "FlopCounterMode / 2", "fvcore": "FlopCountAnalysis", "thop": "thop.profile",
         "ptflops": "get_model_complexity_info", "torchinfo": "summary's Mult-Adds"}


def render_machine(fmt: str, report_dict: dict[str, Any], command: str, columns: Sequence[str] | None = None) -> str:
    """The report in a machine format; `report_dict` is api.report_data(), `columns` names from
    render.columns (default: the command's DEFAULTS, plus backward_macs with --training)."""
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
        columns = with_backward(DEFAULTS[command].machine, "training" in report_dict)
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


def catalog_text(fmt: str, rows: list[dict[str, Any]]) -> str:
    """The layer catalog as csv/tsv/markdown."""
    return table_text(fmt, ("type", "arguments", "summary"), ([r["type"], " ".join(r["arguments"]), r["summary"]] for r in rows))


def checks_json(result: dict[str, Any]) -> str:
    """verify's result as JSON, one check a line."""
    return json_rows(result, "results")


def checks_text(fmt: str, result: dict[str, Any]) -> str:
    """verify's checks as csv/tsv/markdown, one row each."""
    return table_text(fmt, CHECK_COLUMNS, ([str(c[k]) for k in CHECK_COLUMNS] for c in result["results"]))


def by_type_columns(data: dict[str, Any], command: str) -> tuple[str, ...]:
    """--by-type's columns after the type: the command's, and backward_macs with training."""
    return with_backward(DEFAULTS[command].by_type, "training" in data)


def type_totals(data: dict[str, Any]) -> dict[str, Any]:
    """The totals row: the report's totals (the rows sum to them) and the number of layers."""
    total = dict(data["total"], count=sum(r["count"] for r in data["types"]))
    if "training" in data:
        total["backward_macs"] = data["training"]["backward_macs"]
        total["training_macs"] = data["training"]["training_macs"]
    return total


def by_type_text(fmt: str, data: dict[str, Any], command: str) -> str:
    """--by-type as csv/tsv/markdown: type, count and the command's numbers; a total row last."""
    columns = by_type_columns(data, command)
    rows = [[r["type"], *(cell(r, c) for c in columns)] for r in data["types"]]
    total = type_totals(data)
    rows.append(["total", *(cell(total, c) for c in columns)])
    return table_text(fmt, ("type", *columns), rows)


def argument_default(arg: dict[str, Any]) -> str:
    """An argument's default as a config writes it ('required' when it has none)."""
    if arg["required"]:
        return "required"
    value = arg["default"]
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def argument_note(arg: dict[str, Any]) -> str:
    """What an argument means, and that it changes no count when it does not."""
    inert = "changes no shape or count" if arg["inert"] else ""
    return arg["help"] + ("; " if arg["help"] and inert else "") + inert


def type_text(fmt: str, data: dict[str, Any]) -> str:
    """`layers TYPE` as csv/tsv/markdown: one row per fact (section, key, value, note)."""
    rows = [["type", data["type"], data["summary"], "block" if data["block"] else "layer"]]
    rows += [["argument", a["name"], argument_default(a), argument_note(a)] for a in data["arguments"]]
    rows += [["rule", key, text, ""] for key, text in data["rules"].items()]
    rows += [["convention", tool, text, TOOLS.get(tool, "")] for tool, text in data["conventions"].items()]
    ex = data["example"]
    rows.append(["example", "arguments", json.dumps(ex["arguments"]), ""])
    for key in ("input_shape", "output_shape", "params", "buffers", "macs", "flops"):
        rows.append(["example", key, cell(ex, key), ""])
    rows += [["example", f"macs as {tool}", cell(ex["conventions"], tool), "not counted" if n is None else ""]
             for tool, n in ex["conventions"].items()]
    return table_text(fmt, ("section", "key", "value", "note"), rows)


# -- the renderers of RENDERERS: each writes its view of data to page.file ---------------------------

def write_layers(data: dict[str, Any], page: Page) -> None:
    """summary/params/flops/macs/shapes: one row a layer, in page.command's or page.columns' columns."""
    page.file.write(render_machine(page.format, data, page.command, page.columns))


def write_json(data: Any, page: Page) -> None:
    """The data itself as indented JSON (non-ASCII characters escaped)."""
    page.file.write(json.dumps(data, indent=2) + "\n")


def write_json_unicode(data: Any, page: Page) -> None:
    """The data itself as indented JSON, its characters as they are (a rule's ·, a type's —)."""
    page.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_by_type(data: dict[str, Any], page: Page) -> None:
    """--by-type as csv/tsv/markdown."""
    page.file.write(by_type_text(page.format, data, page.command))


def write_compare(data: dict[str, Any], page: Page) -> None:
    """flops --compare as csv/tsv/markdown."""
    page.file.write(compare_text(page.format, data))


def write_catalog(data: list[dict[str, Any]], page: Page) -> None:
    """The layer catalog as csv/tsv/markdown."""
    page.file.write(catalog_text(page.format, data))


def write_type(data: dict[str, Any], page: Page) -> None:
    """`layers TYPE` as csv/tsv/markdown."""
    page.file.write(type_text(page.format, data))


def write_checks_json(data: dict[str, Any], page: Page) -> None:
    """verify's checks as JSON, one a line; the notes, skipped checks and summary on page.err."""
    page.file.write(checks_json(data))
    _checks_epilogue(data, page)


def write_checks(data: dict[str, Any], page: Page) -> None:
    """verify's checks as csv/tsv/markdown; the notes, skipped checks and summary on page.err."""
    page.file.write(checks_text(page.format, data))
    _checks_epilogue(data, page)


def _checks_epilogue(data: dict[str, Any], page: Page) -> None:
    """The rows are all a machine format's stdout holds: what the table says below them goes to err."""
    write_notes(page)
    for s in data["skipped"]:
        print(f"skipped: {s['path']} {s['check']}: {s['reason']}", file=page.notes_file)
    print(data["summary"], file=page.notes_file)
