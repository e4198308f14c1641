"""The command line (Typer): parse options, call the API, hand plain data to a renderer.

Errors from the core are turned into one line on stderr here, and only here.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any, Callable, Optional

import typer

from . import __version__
from .errors import UsageError
from .launch import EXIT_CHECK_FAILED, EXIT_OK
from .layers.peers import CONVENTIONS

try:  # Typer >= 0.2x vendors Click; older releases use the click package
    from typer._click import exceptions as click_exc  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import click.exceptions as click_exc  # type: ignore[no-redef]



class Format(str, Enum):
    """Output formats; table is for people, the rest for programs."""

    table = "table"
    json = "json"
    csv = "csv"
    tsv = "tsv"
    markdown = "markdown"


app = typer.Typer(
    name="layercalc",
    help="Per-layer output shapes, parameters and MACs/FLOPs of a network described in YAML.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigArg = Annotated[
    Optional[str], typer.Argument(help="Config file (YAML or JSON), or - for stdin.", show_default=False)
]
LayerOpt = Annotated[
    Optional[list[str]],
    typer.Option("--layer", "-l", help="Inline layer, repeatable: -l conv2d:out_channels=64,kernel_size=7 -l relu."),
]
InputOpt = Annotated[Optional[str], typer.Option("--input", help="One sample's shape, e.g. 3x224x224.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", help="Batch size (overrides the config).")]
FormatOpt = Annotated[
    Optional[Format], typer.Option("--format", "-f", help="Default: table on a terminal, tsv when piped.")
]
DepthOpt = Annotated[Optional[int], typer.Option("--depth", help="Fold blocks below this depth into one row.")]
TotalOpt = Annotated[bool, typer.Option("--total", help="Print only the total, as a bare integer.")]


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


def _report(config: str | None, layer: list[str] | None, input: str | None, batch: int | None) -> Any:
    from .api import analyse, analyse_layers

    if layer:
        if config:
            raise UsageError("give a CONFIG or --layer specs, not both")
        return analyse_layers(layer, input, batch)
    if config is None:
        raise UsageError("missing CONFIG (a YAML or JSON file, or - for stdin)")
    return analyse(config, batch=batch, input=input)


def _check_options(batch: int | None, depth: int | None) -> None:
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if depth is not None and depth < 0:
        raise UsageError(f"--depth must be >= 0, got {depth}")


def _emit(report: Any, command: str, fmt: Format | None, depth: int | None, costs: dict[str, Any]) -> None:
    """Render a finished report; nothing reaches stdout before the whole result exists."""
    from .api import report_data

    chosen = _format(fmt)
    data = report_data(report, depth, **costs)
    if chosen == "table":
        from .render.table import console, render_table

        render_table(data, command, console())
    else:
        from .render.formats import render_machine

        sys.stdout.write(render_machine(chosen, data, command))


def _format(fmt: Format | None) -> str:
    return fmt.value if fmt else ("table" if sys.stdout.isatty() else "tsv")


Convention = Enum("Convention", {c: c for c in CONVENTIONS}, type=str)  # type: ignore[misc]
Precision = Enum("Precision", {p: p for p in ("float64", "float32")}, type=str)  # type: ignore[misc]
Optimizer = Enum("Optimizer", {o: o for o in ("sgd", "momentum", "adam")}, type=str)  # type: ignore[misc]


def _calculating(command: str, doc: str, total_key: Callable[[bool], str] | None = None) -> None:
    """Register one of summary/params/flops/shapes: same inputs, a different view."""
    costed = command in ("summary", "flops")

    def run(
        config: ConfigArg = None,
        layer: LayerOpt = None,
        input: InputOpt = None,
        batch: BatchOpt = None,
        format: FormatOpt = None,
        depth: DepthOpt = None,
        total: TotalOpt = False,
        macs: Annotated[bool, typer.Option("--macs", help="With --total on flops: print MACs.")] = False,
        convention: Annotated[
            Convention, typer.Option("--convention", help="summary/flops: count as this tool does.")
        ] = Convention.layercalc,  # type: ignore[attr-defined]
        compare: Annotated[bool, typer.Option("--compare", help="flops: every convention side by side.")] = False,
        training: Annotated[bool, typer.Option("--training", help="summary/flops: add backward cost and training memory.")] = False,
        optimizer: Annotated[
            Optimizer, typer.Option("--optimizer", help="With --training: optimizer state to count.")
        ] = Optimizer.adam,  # type: ignore[attr-defined]
    ) -> None:
        _check_options(batch, depth)
        if (total or macs) and total_key is None:
            raise UsageError(f"--total and --macs go with 'params' and 'flops', not '{command}'")
        if not costed and (convention.value != "layercalc" or training):
            raise UsageError(f"--convention and --training go with 'summary' and 'flops', not '{command}'")
        if compare and command != "flops":
            raise UsageError(f"--compare goes with 'flops', not '{command}'")
        report = _report(config, layer, input, batch)
        if compare:
            _emit_compare(report, format)
            return
        costs = {"convention": convention.value, "training": training, "optimizer": optimizer.value}
        if total and total_key:
            from .api import report_data

            data = report_data(report, 0, **costs)
            key = total_key(macs)
            if training and key != "params":  # the forward and backward pass together
                value = data["training"]["training_macs" if macs else "training_flops"]
            else:
                value = data["total"][key]
            if value is None:
                raise UsageError(f"{convention.value} counts nothing in this network")
            print(value)
        else:
            _emit(report, command, format, depth, costs)

    run.__doc__ = doc
    app.command(command)(run)


def _emit_compare(report: Any, fmt: Format | None) -> None:
    from .api import compare_data

    _show(compare_data(report), fmt, "compare")


def _show(data: Any, fmt: Format | None, view: str) -> None:
    """Print plain data as JSON, as a Rich table (render.table.render_VIEW) or as csv/tsv/markdown
    (render.formats.VIEW_text); the renderers are imported only when used."""
    chosen = _format(fmt)
    if chosen == "json":
        import json

        print(json.dumps(data, indent=2))
    elif chosen == "table":
        from .render import table

        getattr(table, f"render_{view}")(data, table.console())
    else:
        from .render import formats

        sys.stdout.write(getattr(formats, f"{view}_text")(chosen, data))


_calculating("summary", "One row a layer: name, type, output shape, params, MACs, FLOPs; totals.")
_calculating("params", "Parameters and buffers per layer, and in total.", lambda macs: "params")
_calculating("flops", "MACs and FLOPs per layer, and in total.", lambda macs: "macs" if macs else "flops")
_calculating("shapes", "Input and output shape of every layer.")


def parse_bytes(text: str) -> int:
    """'2G', '512M', '1.5GiB', '1000000' -> bytes (binary multiples)."""
    units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = raw[-1:] if raw[-1:] in units and raw[-1:] else ""
    try:
        value = float(raw[: len(raw) - len(unit)])
    except ValueError:
        raise UsageError(f"--max-memory: expected a size like 2G or 512M, got {text!r}") from None
    if value <= 0:
        raise UsageError(f"--max-memory must be positive, got {text!r}")
    return int(value * units[unit])


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
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Check only this layer (name or path); repeatable.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Check every element of every tensor (slow on large layers).")] = False,
    impl: Annotated[Optional[str], typer.Option("--impl", help="Your own layer implementation: FILE.py or module:Class.")] = None,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help="Memory budget, e.g. 4G (default: half of what is free).")] = None,
) -> int:
    """NumPy forward/backward of every layer, block and the network, checked against numerical gradients."""
    from .verify import for_dtype, verify

    _check_options(batch, None)
    report = _report(config, layer, input, batch)
    opts = for_dtype(
        dtype.value, seed=seed, rtol=rtol, atol=atol, full=full, only=tuple(only or ()),
        max_memory=parse_bytes(max_memory) if max_memory else None,
        impl=_load_impl(impl) if impl else None,
    )
    if sys.stderr.isatty():
        from .render.table import progress_bar

        with progress_bar() as advance:
            result = verify(report, opts, progress=advance)
    else:
        result = verify(report, opts)
    chosen = _format(format)
    _show(result.to_dict(), format, "checks")
    for exc in result.errors:  # a user's implementation raised: the one line, and their traceback with --debug
        print(f"error: {exc}", file=sys.stderr)
        if DEBUG[0]:
            import traceback

            traceback.print_exception(type(exc.exc), exc.exc, exc.exc.__traceback__, file=sys.stderr)
    if chosen != "table":  # machine formats keep stdout to the rows; the summary and skips go to stderr
        for s in result.skipped:
            print(f"skipped: {s.path} {s.check}: {s.reason}", file=sys.stderr)
        print(result.summary(), file=sys.stderr)
    return EXIT_OK if result.passed else EXIT_CHECK_FAILED


DEBUG = [False]  # set by run_app when --debug is anywhere on the command line


def _load_impl(spec: str) -> type:
    from .impl import load_impl

    return load_impl(spec)


@app.command("kconv")
def kconv_command(
    input: Annotated[str, typer.Option("--input", help="Input height x width, e.g. 3x3.")] = "3x3",
    kernel: Annotated[str, typer.Option("--kernel", help="Kernel height x width, e.g. 2x2.")] = "2x2",
    stride: Annotated[str, typer.Option("--stride", help="Stride, e.g. 1 or 2x1.")] = "1",
    padding: Annotated[str, typer.Option("--padding", help="Zero padding on each side, e.g. 0 or 1x0.")] = "0",
    dilation: Annotated[str, typer.Option("--dilation", help="Dilation, e.g. 1 or 2.")] = "1",
    check: Annotated[bool, typer.Option("--check", help="Verify K_conv numerically against the conv forward and backward.")] = False,
    format: FormatOpt = None,
) -> int:
    """Conv as a matrix: K_conv of a small single-channel conv2d, printed symbolically."""
    from .kconv import check as check_kconv
    from .kconv import kconv, parse_pair

    geometry = (
        parse_pair(input, "--input", 1), parse_pair(kernel, "--kernel", 1), parse_pair(stride, "--stride", 1),
        parse_pair(padding, "--padding", 0), parse_pair(dilation, "--dilation", 1),
    )
    data = kconv(*geometry)
    if check:
        data["checks"] = check_kconv(*geometry)
    _show(data, format, "kconv")
    return EXIT_OK if all(c["passed"] for c in data.get("checks", [])) else EXIT_CHECK_FAILED


@app.command("layers")
def layers_command(format: FormatOpt = None) -> None:
    """The catalog: every layer type with its arguments and defaults."""
    from .api import catalog

    _show(catalog(), format, "catalog")


def run_app(args: list[str]) -> int:
    """Run the Typer app on args; its usage errors become layercalc's UsageError.

    --debug is accepted anywhere on the line (before "--"), not only before the command."""
    end = args.index("--") if "--" in args else len(args)
    DEBUG[0] = "--debug" in args[:end]
    args = [a for a in args[:end] if a != "--debug"] + args[end:]
    try:
        status = app(args=args, prog_name="layercalc", standalone_mode=False)
    except click_exc.UsageError as exc:
        hint = f" (see 'layercalc {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent else ""
        raise UsageError(exc.format_message() + hint) from None
    except click_exc.ClickException as exc:
        raise UsageError(exc.format_message()) from None
    except typer.Abort:
        raise KeyboardInterrupt from None
    return status if isinstance(status, int) else EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """The command line (see launch.main, the installed entry point, which also serves --total)."""
    from .launch import main as launch

    launch(argv)
