"""The Python API: load a config, analyse it; the command line is a thin layer over this."""

from __future__ import annotations

import io
import os
from typing import Any, TextIO

from .analysis import Report
from .analysis import analyse as _analyse
from .config import DTYPE_BYTES, Network, inline_network, parse_shape, suggest
from .conventions import DEFAULT_OPTIMIZER
from .errors import UsageError
from .config import load as _load
from .layers import REGISTRY, Layer
from .layers.base import Int
from .options import check_report_options
from .render import Page, write
from .render.columns import parse_columns

Source = str | os.PathLike[str] | dict[str, Any] | Network


def load(
    source: Source | None = None, *, batch: int | None = None, input: Any = None, dtype: str | None = None,
    layers: list[str] | None = None,
) -> Network:
    """A validated Network from a path ('-' = stdin), YAML/JSON text, a dict, or a Network; or, with
    `layers`, from command-line layer specs ('conv2d:out_channels=8,kernel_size=3', needs `input`).

    batch, input and dtype override the config's (the command line's --batch and --input).
    """
    if layers is not None:
        if source is not None:
            raise UsageError("give a config or layers specs, not both")
        net = inline_network(list(layers), input, batch)
    elif source is None:
        raise UsageError("missing a config (a path, YAML/JSON text, a dict or a Network) or layers specs")
    elif not isinstance(source, Network):
        net = _load(source, batch=batch, input=input)
    else:
        net = source
        if batch is not None:
            net = net._replace(batch=Int()(batch))
        if input is not None:
            net = net._replace(input=parse_shape(input, "input"))
    if dtype is not None:
        if dtype not in DTYPE_BYTES:
            raise UsageError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
        net = net._replace(dtype=dtype)
    return net


def analyse(
    source: Source | None = None, *, batch: int | None = None, input: Any = None, dtype: str | None = None,
    layers: list[str] | None = None,
) -> Report:
    """Per-layer rows and exact totals (Report.rows(), .total, .to_dict()) for a config.

    Keywords as load(): analyse("net.yaml", batch=8), analyse(layers=["linear:out_features=3"], input=[4]).
    """
    return _analyse(load(source, batch=batch, input=input, dtype=dtype, layers=layers))


def analyse_layers(specs: list[str], input: Any, batch: int | None = None) -> Report:
    """Analyse an inline network of command-line layer specs ('conv2d:out_channels=8,kernel_size=3')."""
    return _analyse(inline_network(specs, input, batch))


def catalog() -> list[dict[str, Any]]:
    """Every layer type: name, its arguments ('name' or 'name=default') and a one-line summary."""
    return [
        {"type": name, "arguments": [a.describe() for a in cls.args], "summary": cls.summary}
        for name, cls in REGISTRY.items()
    ]


def report_data(
    report: Report,
    depth: int | None = None,
    convention: str = "layercalc",
    training: bool = False,
    optimizer: str | None = None,
    *,
    by_type: bool = False,
    compare: bool = False,
) -> dict[str, Any]:
    """The JSON object of summary/params/flops/shapes: rows and totals under a convention.

    Under a peer's convention, `macs` is what that tool counts (null where it counts nothing)
    and `flops` twice that; with training, rows gain `backward_macs` and a `training` total
    (optimizer: sgd, momentum or adam, the default). by_type: `types` (one row per layer type,
    see bytype.py) replaces `layers`; compare: the object of `flops --compare` (every convention
    by op category) instead. Options that do not go together are refused (options.py).
    """
    check_report_options(depth=depth, convention=convention, training=training, optimizer=optimizer,
                         by_type=by_type, compare=compare)
    return _report_data(report, depth, convention, training, optimizer or DEFAULT_OPTIMIZER, by_type, compare)


def _report_data(
    report: Report, depth: int | None, convention: str, training: bool, optimizer: str, by_type: bool, compare: bool,
) -> dict[str, Any]:
    """report_data of options already checked."""
    from .conventions import Costing, backward_macs
    from .conventions import training as training_cost

    if compare:
        return compare_data(report)
    if by_type:
        from .bytype import by_type as type_rows

        depth = 0  # the per-layer rows are replaced by the per-type ones
    costing = None if convention == "layercalc" else Costing(report, convention)
    backward = (lambda row: backward_macs(report, row, convention)) if training else None
    data = report.to_dict(depth, macs=costing.macs if costing else None, backward=backward)
    data["convention"] = convention
    if costing is not None:
        macs = costing.total()
        data["total"]["macs"], data["total"]["flops"] = macs, 2 * macs
        if costing.counts_nothing():  # the total is 0, as the tool prints; the footer says why
            data["uncounted"] = True
    if training:
        data["training"] = {"optimizer": optimizer, **training_cost(report, convention, optimizer)}
    if "kv_cache_bytes" in data["total"]:  # say which layers keep it: types differ in whether causal is the default
        from .bytype import cache_by_type

        data["kv_cache_layers"] = [
            {"type": t["type"], "count": t["count"], "bytes": t["elements"] * report.dtype_bytes} for t in cache_by_type(report)
        ]
    if by_type:
        del data["layers"]
        data["types"] = type_rows(report, convention, training)
    return data


def render(
    report: Report, format: str = "table", command: str = "summary", width: int | None = None,
    columns: str | list[str] | None = None, *, file: TextIO | None = None, **options: Any,
) -> str:
    """The report as the command line prints it: format table (Rich, no colour unless `file` is a
    terminal that shows it), json, csv, tsv or markdown; command summary, params, flops, macs or
    shapes; `columns` as --columns takes them ('params,macs' or a list); options are report_data's
    (depth, convention, training, optimizer, by_type, compare).

    Returns the text; with `file`, writes it there instead (the command line passes stdout) and
    returns ''. `width`: the table's, by default 100, or with `file` the console's own.
    """
    check_report_options(command=command, columns=columns, format=format, **options)
    view = "compare" if options.get("compare") else "types" if options.get("by_type") else "layers"
    chosen = None
    if columns is not None and view == "layers":
        chosen = parse_columns(columns if isinstance(columns, str) else ",".join(columns), bool(options.get("training")))
    data = report_data(report, **options)  # the whole result before any of it is written
    if file is not None:
        write(view, data, Page(format, file, width=width, command=command, columns=chosen))
        return ""
    buffer = io.StringIO()
    write(view, data, Page(format, buffer, width=100 if width is None else width, command=command, columns=chosen))
    return buffer.getvalue()


Report.renderer = render  # what Report.table and print(report) draw with (analysis imports no renderer)


def example_config(type_name: str) -> dict[str, Any]:
    """The config of a type's worked example: one layer of it on a small input, batch 1."""
    cls = _layer_type(type_name)
    sample, args = cls.example
    entry: Any = {cls.type_name: args} if args else cls.type_name
    return {"name": f"{cls.type_name} example", "input": list(sample), "layers": [entry]}


def _layer_type(type_name: str) -> type[Layer]:
    """The class of a type name (any case); UsageError with a near miss otherwise."""
    cls = REGISTRY.get(str(type_name).lower())
    if cls is None:
        raise UsageError(f"unknown layer type {type_name!r}{suggest(type_name, REGISTRY)};"
                         " 'layercalc layers' lists them")
    return cls


def describe(type_name: str) -> dict[str, Any]:
    """One layer type in detail, from its class: arguments (default, meaning), the shape, params,
    buffers and MAC rules, each peer tool's rule, and a worked example computed by the calculator."""
    from .layers.peers import CONVENTIONS

    cls = _layer_type(type_name)
    arguments = [
        {"name": a.name, "required": a.required, "default": None if a.required else a.default,
         "help": a.doc, "inert": a.name in cls.inert_args, "shown": a.describe()}
        for a in cls.args
    ]
    args = cls.example[1]
    report = _analyse(load(example_config(cls.type_name)))
    first = report.entries[0]
    counts = {}
    for convention in CONVENTIONS:  # None: the tool does not count this type (its network total is 0)
        data = report_data(report, 0, convention)
        counts[convention] = None if data.get("uncounted") else data["total"]["macs"]
    return {
        "type": cls.type_name,
        "summary": cls.summary,
        "block": cls.is_block(),
        "arguments": arguments,
        "rules": {"shape": cls.shape_rule, "params": cls.params_rule, "buffers": cls.buffers_rule,
                  "macs": cls.macs_rule, "flops": "2·MACs"},
        "conventions": {"layercalc": cls.macs_rule, **cls.peer_rules},
        "inert": list(cls.inert_args),
        "example": {
            "arguments": args,
            "input_shape": list(first.input_shape),
            "output_shape": list(first.output_shape),
            "params": first.params,
            "buffers": first.buffers,
            "macs": first.macs,
            "flops": 2 * first.macs,
            "conventions": counts,
        },
    }


def compare_data(report: Report) -> dict[str, Any]:
    """MACs per op category under every convention, with totals (None = not counted)."""
    from .conventions import compare

    return compare(report)
