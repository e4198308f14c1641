"""The command line (Typer): parse options, call the API, hand plain data to a renderer.

Errors from the core are turned into one line on stderr here, and only here.
"""

from __future__ import annotations

import inspect
import math
import sys
import traceback
import typing
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from . import __version__, api
from .errors import EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, UsageError
from .layers.peers import CHOICES, CONVENTIONS
from .conventions import DEFAULT_OPTIMIZER, OPTIMIZER_STATES
from .options import OPTIMIZERS, check_kconv_options, check_report_options, check_verify_options, flag
from .render import FORMATS, Page, write
from .render.columns import IDENTITY, REGISTRY
from .render.kconv import rows_shown

try:  # Typer >= 0.2x vendors Click; older releases use the click package
    from typer._click import exceptions as click_exc  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import click.exceptions as click_exc  # type: ignore[no-redef]



Format = Enum("Format", {f: f for f in FORMATS}, type=str)  # type: ignore[misc]


app = typer.Typer(
    name="layercalc",
    help="Per-layer output shapes, parameters and MACs/FLOPs of a network described in YAML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigArg = Annotated[
    Optional[str], typer.Argument(metavar="CONFIG", help="Config file (YAML or JSON), or - for stdin.", show_default=False)
]
LayerOpt = Annotated[
    Optional[list[str]],
    typer.Option("--layer", "-l", metavar="SPEC", help="A layer TYPE:ARG=VALUE,... instead of a config (with --input); repeatable: -l conv2d:out_channels=8,kernel_size=3 -l relu."),
]
InputOpt = Annotated[Optional[list[str]], typer.Option("--input", metavar="SHAPE", help="One sample's shape: 3x224x224, 3,224,224 or [3, 224, 224]; NAME=SHAPE sets one named input (repeatable).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", metavar="N", help="Batch size (overrides the config).")]
FormatOpt = Annotated[
    Optional[Format],
    typer.Option("--format", "-f", metavar="FORMAT", help="table, json, csv, tsv or markdown (default: table on a terminal, tsv when piped)."),
]
DepthOpt = Annotated[Optional[int], typer.Option("--depth", metavar="N", help="Fold blocks below this depth into one row.")]
TotalOpt = Annotated[bool, typer.Option("--total", help="Print only the total, as a bare integer.")]
def _columns_option(training: bool) -> Any:
    """--columns, its help naming the columns a command takes (backward_macs only with --training)."""
    names = [n for n in REGISTRY if n != "backward_macs"]
    listed = ", ".join(names) + (", backward_macs (with --training)" if training else "")
    return Annotated[
        Optional[list[str]],  # a list only to see a repeated --columns and refuse it (it would keep the last)
        typer.Option(
            "--columns", metavar="NAMES",
            help=f"Columns in this order, comma-separated (table, csv, tsv, markdown): {listed}."
            f" {', '.join(IDENTITY)} always come first.",
            show_default=False,
        ),
    ]


ColumnsOpt = _columns_option(training=True)


def _version(value: bool) -> None:
    if value:
        print(f"layercalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
) -> None:
    """layercalc: the numbers of every layer, from a YAML config."""


def _inputs(input: list[str] | None) -> str | list[str] | None:
    """--input as given: one shape (the last one given, as a repeated option overrides), or NAME=SHAPE items."""
    if not input:
        return None
    named = [v for v in input if "=" in v]
    return named if named else input[-1]


def _report(config: str | None, layer: list[str] | None, input: list[str] | None, batch: int | None) -> Any:
    input = _inputs(input)
    if layer:
        if config:
            raise UsageError("give a CONFIG or --layer specs, not both")
        return api.analyse_layers(layer, input, batch)
    if config is None:
        raise UsageError("missing CONFIG (a YAML or JSON file, or - for stdin)")
    return api.analyse(config, batch=batch, input=input)


def _format(fmt: Format | None) -> str:
    """The format asked for; by default a table for a terminal and tsv for a pipe or a file."""
    return fmt.value if fmt else ("table" if sys.stdout.isatty() else "tsv")


def _page(fmt: Format | None, **fields: Any) -> Page:
    """Where a command writes its view: stdout, notes on stderr."""
    return Page(_format(fmt), sys.stdout, err=sys.stderr, **fields)


Convention = Enum("Convention", {c: c for c in CHOICES}, type=str)  # type: ignore[misc]
Precision = Enum("Precision", {p: p for p in ("float64", "float32")}, type=str)  # type: ignore[misc]
Optimizer = Enum("Optimizer", {o: o for o in OPTIMIZERS}, type=str)  # type: ignore[misc]


# Which of the calculating commands takes each option beyond the common ones; a command's
# signature (and so its --help) lists only its own.
COMMAND_OPTIONS = {
    "summary": ("convention", "training", "optimizer", "by_type", "sweep", "plot"),
    "params": ("total", "trainable", "by_type", "sweep", "plot"),
    "flops": ("total", "macs", "convention", "compare", "training", "optimizer", "by_type", "sweep", "plot"),
    "macs": ("total", "convention", "compare", "training", "optimizer", "by_type", "sweep", "plot"),  # flops' MACs view
    "shapes": (),
}
COMMON_OPTIONS = ("config", "layer", "input", "batch", "format", "depth", "columns")


def _calculating(command: str, doc: str) -> None:
    """Register one of summary/params/flops/shapes: same inputs, a different view."""

    def run(
        config: ConfigArg = None,
        layer: LayerOpt = None,
        input: InputOpt = None,
        batch: BatchOpt = None,
        format: FormatOpt = None,
        depth: DepthOpt = None,
        total: TotalOpt = False,
        columns: ColumnsOpt = None,
        macs: Annotated[bool, typer.Option("--macs", help="With --total: print MACs, not FLOPs.")] = False,
        trainable: Annotated[
            bool, typer.Option("--trainable", help="With --total: print the trainable params only (frozen layers left out).")
        ] = False,
        convention: Annotated[
            Convention,
            typer.Option("--convention", metavar="TOOL", help=f"Count as this tool does: {', '.join(CONVENTIONS)};"
                         " or causal: masked attention products over the pairs the mask keeps."),
        ] = Convention.layercalc,  # type: ignore[attr-defined]
        compare: Annotated[bool, typer.Option("--compare", help="Every convention side by side, by category.")] = False,
        training: Annotated[
            bool, typer.Option("--training", help="Add the backward pass and the memory of a training step.")
        ] = False,
        optimizer: Annotated[
            Optional[Optimizer],
            typer.Option("--optimizer", metavar="NAME", help=f"With --training: {', '.join(o for o in OPTIMIZER_STATES if o != DEFAULT_OPTIMIZER)} or {DEFAULT_OPTIMIZER} (default).", show_default=False),
        ] = None,
        by_type: Annotated[
            bool, typer.Option("--by-type", help="One row per layer type: count, params, MACs (layers only, not blocks).")
        ] = False,
        sweep: Annotated[Optional[str], typer.Option("--sweep", metavar="NAME=A..B[:STEPS]", help="Params, MACs and memory as T, batch or side (an image's) runs from A to B.")] = None,
        plot: Annotated[Optional[str], typer.Option("--plot", metavar="FILE.svg", help="With --sweep: draw the series to this SVG file.")] = None,
    ) -> None:
        if sweep is not None or plot is not None:
            _sweep(config, layer, input, batch, format, sweep, plot, depth=depth, total=total, columns=columns,
                   convention=convention.value != "layercalc", compare=compare, training=training, by_type=by_type)
            return
        columns = _one_columns(columns)
        choices = {"depth": depth, "convention": convention.value, "training": training,
                   "optimizer": optimizer.value if optimizer else None, "by_type": by_type, "compare": compare}
        check_report_options(flag, command=command, batch=batch, columns=columns, total=total, macs=macs,
                             trainable=trainable, format=format.value if format else None, **choices)
        report = _report(config, layer, input, batch)
        if total:
            print(_total(report, command, macs, trainable, choices))
        else:
            api.render(report, _format(format), command, columns=columns, file=sys.stdout, **choices)

    run.__doc__ = doc
    own = COMMON_OPTIONS + COMMAND_OPTIONS[command]
    hints = typing.get_type_hints(run, include_extras=True)  # the Annotated options, evaluated
    hints["columns"] = _columns_option("training" in COMMAND_OPTIONS[command])
    signature = inspect.signature(run)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(annotation=hints[p.name]) for p in signature.parameters.values() if p.name in own]
    )
    app.command(command)(run)


def _sweep(config: str | None, layer: list[str] | None, input: str | None, batch: int | None, fmt: Format | None,
           sweep: str | None, plot: str | None, **others: Any) -> None:
    """--sweep: the series as the format asks, and with --plot the SVG; no other view combines with it."""
    if sweep is None:
        raise UsageError("--plot draws a sweep: give --sweep NAME=A..B[:STEPS] too")
    clash = [name for name, given in others.items() if given not in (None, False)]
    if clash:
        raise UsageError(f"--sweep draws its own series; it does not combine with --{clash[0].replace('_', '-')}")
    data = api.sweep(_report(config, layer, input, batch).network, sweep)
    if plot is not None:
        from .render.plot import sweep_svg

        try:
            with open(plot, "w", encoding="utf-8") as handle:
                handle.write(sweep_svg(data))
        except OSError as exc:
            raise UsageError(f"cannot write {plot}: {exc.strerror}") from None
    write("sweep", data, _page(fmt))


def _one_columns(given: list[str] | None) -> str | None:
    """The one --columns list; given twice it is refused, as a config refuses a duplicate key."""
    if not given:
        return None
    if len(given) > 1:
        raise UsageError(f"--columns is given {len(given)} times; give one comma-separated list, e.g. --columns {','.join(given)}")
    return given[0]


def _total(report: Any, command: str, macs: bool, trainable: bool, choices: dict[str, Any]) -> int:
    """The one integer --total prints: params (trainable with --trainable), else FLOPs (MACs with
    --macs or the macs command), of the forward and backward pass with --training."""
    data = api.report_data(report, **{**choices, "depth": 0})
    macs = macs or command == "macs"
    key = ("trainable_params" if trainable else "params") if command == "params" else "macs" if macs else "flops"
    if choices["training"] and key != "params":  # the forward and backward pass together
        return data["training"]["training_macs" if macs else "training_flops"]
    return data["total"][key]


_calculating("summary", "One row a layer: name, type, output shape, params, MACs, FLOPs; totals.")
_calculating("params", "Parameters and buffers per layer, and in total.")
_calculating("flops", "MACs and FLOPs per layer, and in total.")
_calculating("macs", "MACs per layer, and in total (the figure most papers quote; FLOPs = 2 MACs); --total prints MACs.")
_calculating("shapes", "Input and output shape of every layer.")


def parse_bytes(text: str) -> int:
    """'2G', '2GB', '512M', '1000000' -> bytes in decimal units, as everywhere in layercalc (1 MB =
    10^6 bytes, 1 GB = 10^9); '2GiB', '512MiB' in binary units when the i says so."""
    raw = text.strip().lower()
    base = 1024 if raw.endswith("ib") else 1000
    raw = raw.removesuffix("ib").removesuffix("b")
    powers = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
    unit = raw[-1:] if raw[-1:] in powers and raw[-1:] else ""
    try:
        value = float(raw[: len(raw) - len(unit)])
    except ValueError:
        value = math.nan
    if not math.isfinite(value * base ** powers[unit]):  # inf, nan, 1e400: no size at all
        raise UsageError(f"--max-memory: expected a size like 2G (2·10^9 bytes) or 512M, got {text!r}")
    if int(value * base ** powers[unit]) < 1:
        raise UsageError(f"--max-memory must be at least 1 byte, got {text!r}")
    return int(value * base ** powers[unit])


@app.command("verify")
def verify_command(
    config: ConfigArg = None,
    layer: LayerOpt = None,
    input: InputOpt = None,
    batch: BatchOpt = None,
    format: FormatOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random inputs, parameters and directions.")] = 0,
    rtol: Annotated[Optional[float], typer.Option("--rtol", help="Relative tolerance (default 1e-5).")] = None,
    atol: Annotated[Optional[float], typer.Option("--atol", help="Absolute tolerance (default 1e-8).")] = None,
    dtype: Annotated[
        Precision, typer.Option("--dtype", help="float64 (default) or float32: the dtype the layers run in; numeric gradients are float64.")
    ] = Precision.float64,  # type: ignore[attr-defined]
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Check only this layer or block (name or path, e.g. layer1.0.body.conv1) and what is inside it; repeatable.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Check every element of every tensor (slow on large layers).")] = False,
    impl: Annotated[Optional[str], typer.Option("--impl", help="Your own layer implementation: FILE.py or module:Class.")] = None,
    every: Annotated[bool, typer.Option("--all", help="The table lists every check (default: the failed ones and the summary).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="With the table format: every check, as --all.")] = False,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help="Memory budget in decimal units, e.g. 4G = 4·10^9 bytes (default: half of what is free, at most 2.15 GB).")] = None,
) -> int:
    """NumPy forward/backward of every layer, block and the network, checked against numerical gradients."""
    from .verify import for_dtype, selection, verify

    check_report_options(flag, batch=batch)
    check_verify_options(seed, rtol, atol)
    report = _report(config, layer, input, batch)
    opts = for_dtype(
        dtype.value, seed=seed, rtol=rtol, atol=atol, full=full, only=tuple(only or ()),
        max_memory=parse_bytes(max_memory) if max_memory else None,
        impl=_load_impl(impl) if impl else None,
    )
    selected, total = selection(report, opts)  # an --only naming nothing, an --impl of an unused type: exit 2
    if opts.only:
        print(f"verify: --only selects {selected} of the {total} layers and blocks", file=sys.stderr)
    if sys.stderr.isatty():
        from .render.table import progress_bar

        with progress_bar() as advance:
            result = verify(report, opts, progress=advance)
    else:
        result = verify(report, opts)
    # for people, the table: the failures and the summary (every check with --all or -v); the machine
    # formats keep stdout to the rows and say the summary and skipped checks on stderr
    notes = tuple(_error_note(exc) for exc in result.errors)
    write("checks", result.to_dict(), _page(format, every=every or verbose, notes=notes))
    if result.interrupted:
        return EXIT_TERMINATED if result.stopped_by == "SIGTERM" else EXIT_INTERRUPTED
    return EXIT_OK if result.passed else EXIT_CHECK_FAILED


DEBUG = [False]  # set by run_app when --debug is anywhere on the command line


def _error_note(exc: Any) -> str:
    """A user's implementation raised: the one line, and their traceback with --debug."""
    if not DEBUG[0]:
        return f"error: {exc}"
    trace = "".join(traceback.format_exception(type(exc.exc), exc.exc, exc.exc.__traceback__))
    return f"error: {exc}\n" + trace.removesuffix("\n")


def _load_impl(spec: str) -> type:
    from .impl import load_impl

    return load_impl(spec)


@app.command("kconv")
def kconv_command(
    input: Annotated[str, typer.Option("--input", help="Input size: one number is 1-D (5), HxW is 2-D (3x3).")] = "3x3",
    kernel: Annotated[str, typer.Option("--kernel", help="Kernel size, e.g. 3 (1-D) or 2x2.")] = "2x2",
    stride: Annotated[str, typer.Option("--stride", help="Stride, e.g. 1 or 2x1.")] = "1",
    padding: Annotated[str, typer.Option("--padding", help="Zero padding on each side, e.g. 0 or 1x0.")] = "0",
    dilation: Annotated[str, typer.Option("--dilation", help="Dilation, e.g. 1 or 2.")] = "1",
    check: Annotated[bool, typer.Option("--check", help="Verify numerically: the matrix, the layer's NumPy forward and backward, and the printed terms.")] = False,
    backward: Annotated[bool, typer.Option("--backward", help="∇x term by term, and as the full correlation of the spread, padded ∇y with the flipped kernel.")] = False,
    transposed: Annotated[bool, typer.Option("--transposed", help="A transposed convolution (forward = K_convᵀ); --input is its input.")] = False,
    output_padding: Annotated[str, typer.Option("--output-padding", help="With --transposed: extra output cells at the far end.")] = "0",
    draw: Annotated[Optional[str], typer.Option("--draw", help="Write the sliding window as an animated SVG to this file (- for stdout).")] = None,
    frames: Annotated[bool, typer.Option("--frames", help="With --draw: a static strip of every frame, for print.")] = False,
    format: FormatOpt = None,
) -> int:
    """Conv as a matrix: K_conv of a small single-channel conv, its backward term by term, drawn."""
    from . import kconv as kc

    check_kconv_options(draw, frames)
    geo = kc.geometry(input, kernel, stride, padding, dilation, transposed, output_padding)
    if draw is not None:
        from .render.svg import svg

        text = svg(kc.drawing(geo, animated=not frames), animated=not frames)
        if draw == "-":
            sys.stdout.write(text)
            return EXIT_OK
        try:
            with open(draw, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            raise UsageError(f"--draw: cannot write {draw}: {exc.strerror}") from None
    page = _page(format)
    data = kc.kconv(geo, rows_up_to=rows_shown(page.format))
    if backward or transposed:
        data["symbolic"] = kc.symbolic(geo, backward)
    if page.format == "html":
        data.update(kc.lecture(geo))
    if check:
        data["checks"] = kc.check(geo, backward)
    write("kconv", data, page)
    return EXIT_OK if all(c["passed"] for c in data.get("checks", [])) else EXIT_CHECK_FAILED


@app.command("layers")
def layers_command(
    type: Annotated[
        Optional[str],
        typer.Argument(metavar="TYPE", help="One type in detail: arguments, rules, each tool's count, an example.", show_default=False),
    ] = None,
    format: FormatOpt = None,
) -> None:
    """The catalog: every layer type with its arguments and defaults; or one TYPE in detail."""
    if type is None:
        write("catalog", api.catalog(), _page(format))
    else:
        write("type", api.describe(type), _page(format))


SERVE_ANSWERS = {  # --print NAME: one bare figure of the plan, for shell pipelines
    "max-batch": ("memory", "max_batch"),
    "kv-per-token": ("memory", "kv_cache_per_token"),
    "weights": ("memory", "weights"),
    "peak-memory": ("memory", "peak"),
    "ttft": ("bounds", "ttft_seconds"),
    "tpot": ("bounds", "tpot_seconds"),
    "tokens-per-second": ("bounds", "tokens_per_second"),
}


@app.command("serve")
def serve_command(
    config: ConfigArg = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", metavar="NAME", help="A preset (see 'layercalc gpus'); needed for the fit and the time bounds.")] = None,
    gpus: Annotated[int, typer.Option("--gpus", metavar="G", help="Devices; a multiple of --tp (replicas serve separate batches).")] = 1,
    tp: Annotated[int, typer.Option("--tp", metavar="T", help="Tensor-parallel degree: splits weight matrices and key/value heads.")] = 1,
    weights_dtype: Annotated[Optional[str], typer.Option("--weights-dtype", metavar="D", help="float32, float16, bfloat16, fp8, int8 or int4 (default: the config's dtype).")] = None,
    kv_dtype: Annotated[Optional[str], typer.Option("--kv-dtype", metavar="D", help="The KV cache's dtype (default: the config's).")] = None,
    group_size: Annotated[int, typer.Option("--group-size", metavar="N", help="int8/int4 weights: one fp16 scale per N inputs of a row.")] = 128,
    prompt: Annotated[Optional[int], typer.Option("--prompt", metavar="P", help="Prompt tokens (default: the config's sequence length).")] = None,
    generate: Annotated[int, typer.Option("--generate", metavar="G", help="Generated tokens.")] = 1,
    batch: BatchOpt = None,
    peak_tflops: Annotated[Optional[float], typer.Option("--peak-tflops", metavar="F", help="Dense peak TFLOP/s at the config's dtype (overrides the preset).")] = None,
    gpu_memory: Annotated[Optional[float], typer.Option("--gpu-memory", metavar="GB", help="Device memory in GB (overrides the preset).")] = None,
    bandwidth: Annotated[Optional[float], typer.Option("--bandwidth", metavar="GB/S", help="Memory bandwidth in GB/s (overrides the preset).")] = None,
    answer: Annotated[Optional[str], typer.Option("--print", metavar="WHAT", help=f"Print one bare figure: {', '.join(SERVE_ANSWERS)}.")] = None,
    convention: Annotated[str, typer.Option("--convention", metavar="NAME", help="The prefill's count: layercalc (the full T×T) or causal (the pairs the mask keeps).")] = "layercalc",
    format: FormatOpt = None,
) -> None:
    """What serving a decoder costs: weights and KV-cache memory, prefill and decode, roofline time bounds."""
    from .api import serve

    _check_answer(answer, SERVE_ANSWERS, config)
    data = serve(config, gpu=gpu, gpus=gpus, tp=tp, weights_dtype=weights_dtype, kv_dtype=kv_dtype, prompt=prompt,
                 generate=generate, batch=batch, group_size=group_size, peak_tflops=peak_tflops,
                 gpu_memory=gpu_memory, bandwidth=bandwidth, convention=convention)
    if answer is not None:
        _print_answer(data, SERVE_ANSWERS, answer, "a device: give --gpu NAME (see 'layercalc gpus')")
        return
    _show_plan(data, format, "serve")


TRAIN_ANSWERS = {  # --print NAME: one bare figure of the plan
    "memory": ("memory", "peak"),
    "time": ("time", "total_seconds"),
    "step-time": ("time", "step_seconds"),
    "gpu-hours": ("time", "gpu_hours"),
    "mfu": ("time", "mfu"),
    "flops-per-step": ("compute", "flops_per_step"),
}


@app.command("train")
def train_command(
    config: ConfigArg = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", metavar="NAME", help="A preset (see 'layercalc gpus'); needed for the fit and the time.")] = None,
    gpus: Annotated[int, typer.Option("--gpus", metavar="G", help="Devices: tp × pp × data-parallel replicas.")] = 1,
    tokens: Annotated[Optional[float], typer.Option("--tokens", metavar="D", help="Tokens to train on (e.g. 2e12): the run's time and GPU-hours.")] = None,
    global_batch: Annotated[Optional[int], typer.Option("--global-batch", metavar="B", help="Samples a step (default: the micro-batch times the data-parallel replicas).")] = None,
    micro_batch: Annotated[Optional[int], typer.Option("--micro-batch", metavar="b", help="Samples a forward on one replica (default: the config's batch, or the global batch over the replicas).")] = None,
    precision: Annotated[str, typer.Option("--precision", metavar="P", help="fp32, bf16, fp16-mixed, bf16-mixed or fp8-mixed.")] = "bf16-mixed",
    optimizer: Annotated[str, typer.Option("--optimizer", metavar="O", help="adam, momentum or sgd.")] = "adam",
    tp: Annotated[int, typer.Option("--tp", metavar="T", help="Tensor-parallel degree.")] = 1,
    pp: Annotated[int, typer.Option("--pp", metavar="P", help="Pipeline stages.")] = 1,
    zero: Annotated[int, typer.Option("--zero", metavar="Z", help="ZeRO stage 0-3 over the data-parallel replicas.")] = 0,
    sp: Annotated[bool, typer.Option("--sp", help="Sequence parallelism (with --tp): split the residual stream's activations too.")] = False,
    recompute: Annotated[str, typer.Option("--recompute", metavar="R", help="none, selective (attention's T×T part) or full (each repeated block).")] = "none",
    flash: Annotated[bool, typer.Option("--flash", help="FlashAttention: no T×T matrices kept.")] = False,
    mfu: Annotated[Optional[float], typer.Option("--mfu", metavar="F", help="Model FLOPs utilisation for the time (default 0.4).")] = None,
    gpu_hours: Annotated[Optional[float], typer.Option("--gpu-hours", metavar="H", help="Measured GPU-hours for --tokens: print the MFU they imply.")] = None,
    tokens_per_second: Annotated[Optional[float], typer.Option("--tokens-per-second", metavar="R", help="Measured tokens/s of the whole run: print the MFU it implies.")] = None,
    search_layouts: Annotated[bool, typer.Option("--search", help="Every layout of --gpus that fits, fastest first (an estimate).")] = False,
    peak_tflops: Annotated[Optional[float], typer.Option("--peak-tflops", metavar="F", help="Dense peak TFLOP/s at the recipe's precision (overrides the preset).")] = None,
    gpu_memory: Annotated[Optional[float], typer.Option("--gpu-memory", metavar="GB", help="Device memory in GB (overrides the preset).")] = None,
    lora: Annotated[Optional[int], typer.Option("--lora", metavar="R", help="Freeze every weight and add rank-R LoRA adapters (with --lora-targets).")] = None,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets", metavar="NAMES", help="The linear layers or projections to adapt, e.g. q_proj,v_proj (peft's target_modules).")] = None,
    answer: Annotated[Optional[str], typer.Option("--print", metavar="WHAT", help=f"Print one bare figure: {', '.join(TRAIN_ANSWERS)}.")] = None,
    format: FormatOpt = None,
) -> None:
    """The cost of training: compute a step, memory per device line by line, time and GPU-hours."""
    from .api import train

    _check_answer(answer, TRAIN_ANSWERS, config)
    if search_layouts and answer is not None:
        raise UsageError("--search lists layouts; it does not combine with --print")
    data = train(config, gpu=gpu, gpus=gpus, tokens=tokens, global_batch=global_batch, micro_batch=micro_batch,
                 precision=precision, optimizer=optimizer, tp=tp, pp=pp, zero=zero, sp=sp, recompute=recompute,
                 flash=flash, mfu=mfu, gpu_hours=gpu_hours, tokens_per_second=tokens_per_second,
                 search=search_layouts, peak_tflops=peak_tflops, gpu_memory=gpu_memory, lora=lora,
                 lora_targets=lora_targets)
    if answer is not None:
        totals = TRAIN_ANSWERS[answer][1] in ("total_seconds", "gpu_hours")
        _print_answer(data, TRAIN_ANSWERS, answer, "--tokens and --gpu" if totals else "--gpu")
        return
    _show_plan(data, format, "search" if search_layouts else "train")


def _check_answer(answer: str | None, answers: dict[str, tuple[str, str]], config: str | None) -> None:
    """A --print name the plan has, and a CONFIG: checked before any work is done."""
    if answer is not None and answer not in answers:
        raise UsageError(f"--print must be one of {', '.join(answers)}, got {answer!r}")
    if config is None:
        raise UsageError("missing CONFIG (a YAML or JSON file, or - for stdin)")


def _print_answer(data: dict[str, Any], answers: dict[str, tuple[str, str]], answer: str, need: str) -> None:
    """One figure of a plan, bare, for a pipeline; UsageError naming what it needs when it has none."""
    section, key = answers[answer]
    value = data[section][key]
    if value is None:
        raise UsageError(f"--print {answer} needs {need}")
    print(value)


import_app = typer.Typer(help="Write a layercalc config from another tool's description of a model.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("hf")
def import_hf_command(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A Hugging Face config.json, or a directory holding one.")],
    input: Annotated[Optional[str], typer.Option("--input", metavar="T", help="Tokens a sequence (default 2048, at most max_position_embeddings).")] = None,
    batch: BatchOpt = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="OUT.yaml", help="Write the config here instead of to stdout.")] = None,
) -> None:
    """The layercalc config of a Hugging Face config.json: same modules, names and counts."""
    from .api import import_hf

    text = import_hf(path, input=input, batch=batch)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None


@app.command("gpus")
def gpus_command(format: FormatOpt = None) -> None:
    """The accelerator presets: dense peak TFLOP/s, memory, bandwidth, and each figure's source."""
    from .api import gpus

    _show_plan(gpus(), format, "gpus")


def _show_plan(data: Any, fmt: Format | None, view: str) -> None:
    """A plan, a search's layouts or the presets, through the renderers' registry."""
    write(view, data, _page(fmt))


def run_app(args: list[str]) -> int:
    """Run the Typer app on args; its usage errors become layercalc's UsageError.

    --debug is accepted anywhere on the line (before "--"), not only before the command."""
    end = args.index("--") if "--" in args else len(args)
    DEBUG[0] = "--debug" in args[:end]
    args = [a for a in args[:end] if a != "--debug"] + args[end:]
    try:
        status = app(args=args or ["--help"], prog_name="layercalc", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:  # a bare group (`layercalc import`): its help; success
        if exc.format_message():  # Rich has printed it already; plain Click gives it here
            print(exc.format_message())
        return EXIT_OK
    except click_exc.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx and exc.ctx.parent else ""
        raise UsageError(exc.format_message() + hint) from None
    except click_exc.ClickException as exc:
        raise UsageError(exc.format_message()) from None
    except typer.Abort:
        raise KeyboardInterrupt from None
    return status if isinstance(status, int) else EXIT_OK

