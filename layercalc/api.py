"""The Python API: load a config, analyse it; the command line is a thin layer over this."""

from __future__ import annotations

import io
import os
from typing import Any, TextIO

from .analysis import Report
from .analysis import analyse as _analyse
from .config import DTYPE_BYTES, Network, inline_network, override_input, parse_shape, suggest
from .errors import UsageError
from .config import load as _load
from .layers import REGISTRY, Layer
from .layers.base import Int

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
            net = override_input(net, input)
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
    from .conventions import DEFAULT_OPTIMIZER
    from .options import check_report_options  # the checks and renderers load only when a view is asked for

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
            {"type": t["type"], "count": t["count"], "bytes": t["elements"] * report.dtype_bytes,
             **({"state": True} if t.get("state") else {})} for t in cache_by_type(report)
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
    from .options import check_report_options
    from .render import Page, write
    from .render.columns import parse_columns

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


def serve(
    source: Source, *, gpu: str | None = None, gpus: int = 1, tp: int = 1, weights_dtype: str | None = None,
    kv_dtype: str | None = None, prompt: int | None = None, generate: int = 1, batch: int | None = None,
    group_size: int = 128, peak_tflops: float | None = None, gpu_memory: float | None = None,
    bandwidth: float | None = None, convention: str = "layercalc",
) -> dict[str, Any]:
    """The serving plan of a decoder: memory (bytes per device), prefill and decode cost, roofline bounds.

    Dtypes default to the config's; prompt to its sequence length; batch to its batch. gpu is a
    preset name (see gpus()); peak_tflops, gpu_memory (GB) and bandwidth (GB/s) override or replace it.
    convention "causal" counts the prefill's masked attention over the pairs it keeps.
    """
    from . import gpus as devices
    from .serving import Setup, dtype_name, plan

    net = load(source, batch=batch)
    weights = dtype_name(weights_dtype or net.dtype, "--weights-dtype")
    kv = dtype_name(kv_dtype or net.dtype, "--kv-dtype")
    device = None if gpu is None else devices.gpu(gpu)
    if device is not None or peak_tflops is not None or gpu_memory is not None or bandwidth is not None:
        precision = devices.DTYPE_PRECISION[net.dtype]
        device = devices.custom(device, peak_tflops, gpu_memory, bandwidth, precision)
    if convention not in ("layercalc", "causal"):
        raise UsageError(f"--convention for serve is layercalc or causal, got {convention!r}")
    setup = Setup(gpus, tp, weights, kv, net.batch, 0 if prompt is None else prompt, generate, group_size, convention)
    if prompt is not None and prompt < 1:
        raise UsageError(f"--prompt must be at least 1, got {prompt}")
    return plan(net, device, setup)


def gpus() -> list[dict[str, Any]]:
    """The accelerator presets: name, dense peak TFLOP/s per precision, memory, bandwidth, source."""
    from .gpus import listing

    return listing()


def train(
    source: Source, *, gpu: str | None = None, gpus: int = 1, tokens: float | None = None,
    global_batch: int | None = None, micro_batch: int | None = None, precision: str = "bf16-mixed",
    optimizer: str = "adam", tp: int = 1, pp: int = 1, zero: int = 0, sp: bool = False, recompute: str = "none",
    flash: bool = False, mfu: float | None = None, gpu_hours: float | None = None,
    tokens_per_second: float | None = None, search: bool = False, peak_tflops: float | None = None,
    gpu_memory: float | None = None, lora: int | None = None, lora_targets: str | None = None,
) -> Any:
    """The training plan (a dict: layout, compute, memory in bytes per device, time), or with search
    the list of layouts that fit, fastest first. Time figures are estimates at an MFU (default 0.4).
    lora = r with lora_targets = "q_proj,v_proj": every weight frozen, rank-r adapters on those."""
    from . import gpus as devices
    from .training import RECIPES, Layout, Pace, plan
    from .training import search as search_layouts

    net = load(source)
    if (lora is None) != (lora_targets is None):
        raise UsageError("--lora R and --lora-targets NAMES go together: the adapters' rank and the linear maps they adapt")
    if lora is not None and lora_targets is not None:
        from .lora import whole

        net = whole(net, lora, lora_targets)
    if precision not in RECIPES:
        raise UsageError(f"--precision must be one of {', '.join(RECIPES)}, got {precision!r}")
    device = None if gpu is None else devices.gpu(gpu)
    if device is not None or peak_tflops is not None or gpu_memory is not None:
        device = devices.custom(device, peak_tflops, gpu_memory, None, RECIPES[precision].precision,
                                needs_bandwidth=False)
    # unset batches: each replica runs the config's batch (or the micro-batch given) once a step
    dp = max(1, gpus // max(1, tp * pp))
    if global_batch is None:
        micro = net.batch if micro_batch is None else micro_batch
        batch = micro * dp
    else:
        batch = global_batch
        micro = micro_batch if micro_batch is not None else max(1, batch // dp)
    layout = Layout(gpus, tp, pp, zero, sp, micro, batch, recompute, flash, precision, optimizer)
    pace = Pace(mfu, gpu_hours, tokens_per_second)
    if tokens is not None and not (0 < tokens < float("inf")):
        raise UsageError(f"--tokens must be a positive number, got {tokens}")
    count = None if tokens is None else int(tokens)
    if search:
        if device is None:
            raise UsageError("--search needs --gpu: which layouts fit depends on the device's memory")
        return search_layouts(net, device, layout, pace)
    return plan(net, device, layout, pace, count)


def import_hf(path: str | os.PathLike[str], *, input: Any = None, batch: int | None = None) -> str:
    """The layercalc config (YAML text, commented with its source fields) of a Hugging Face config.json
    or of a directory holding one. Fields it does not read are named in warnings (LayercalcWarning)."""
    import json

    from .errors import ConfigError, Location
    from .hf import document, to_yaml

    file = os.path.join(path, "config.json") if os.path.isdir(path) else os.fspath(path)
    try:
        with open(file, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc.strerror if isinstance(exc, OSError) else exc}", Location(file=file)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc.msg}", Location(file=file, line=exc.lineno)) from None
    if not isinstance(doc, dict) or "model_type" not in doc:
        raise ConfigError("not a Hugging Face config: no model_type", Location(file=file))
    try:
        net, fields = document(doc, file, None if input is None else parse_shape(input, "--input"))
    except ConfigError as exc:
        raise exc.at(file=file) from None
    if batch is not None:
        net["batch"] = Int()(batch)
    text = to_yaml(net, fields)
    load(text)  # what it writes must load as it is
    return text


def sweep(source: Source, spec: str) -> dict[str, Any]:
    """Params, MACs and memory as one size runs over a range: spec 'T=128..8192[:STEPS]', 'batch=1..64'
    or 'side=32..512' (an image's height and width). Returns name, sweep, values and series."""
    from .sweep import parse, run

    return run(load(source), parse(spec))
