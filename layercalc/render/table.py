"""The terminal view (Rich): a table that reads at a glance, and a footer of exact totals.

The only module besides verify's progress display that imports Rich; imported only when a
table is actually printed, so machine formats and --total never pay for it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .formats import human, human_bytes

BAR_WIDTH = 8
# the column that the share bar measures, per command
SHARE_OF = {"summary": "macs", "flops": "macs", "params": "params"}
NUMBER_COLUMNS = {
    "summary": ("params", "macs", "flops"),
    "params": ("params", "buffers"),
    "flops": ("macs", "flops"),
    "shapes": (),
}
TITLES = {"params": "Params", "buffers": "Buffers", "macs": "MACs", "flops": "FLOPs", "backward_macs": "Backward MACs"}


class _Console(Console):
    """Rich's Console, but a reader that went away (`| head -1`) is not a failure."""

    def on_broken_pipe(self) -> None:
        # Rich exits 1 here, the status of a failed check; the entry point exits 0 for it
        self.quiet = True
        raise BrokenPipeError


def console(file: TextIO | None = None) -> Console:
    """A Console on stdout (or file); Rich itself honours NO_COLOR and non-terminals."""
    return _Console(file=file, highlight=False, soft_wrap=False)


def bar(share: float) -> Text:
    """'████▍      42.3%': a small bar so the heavy layers stand out."""
    eighths = round(max(0.0, min(1.0, share)) * BAR_WIDTH * 8)
    full, part = divmod(eighths, 8)
    blocks = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    text = Text(blocks.ljust(BAR_WIDTH), style="cyan")
    text.append(f" {share * 100:5.1f}%", style="dim" if share < 0.05 else "")
    return text


def render_table(report: dict[str, Any], command: str, out: Console) -> None:
    """Print the per-layer table and the totals footer for summary/params/flops/shapes."""
    total = report["total"]
    numbers = NUMBER_COLUMNS[command]
    if command == "summary" and out.width < 110:
        numbers = ("params", "macs")  # FLOPs are 2 per MAC: the footer says so; the row needs room
    if report.get("training") and command in ("summary", "flops"):
        numbers += ("backward_macs",)
    share_key = SHARE_OF.get(command)
    title = f"[bold]{report['name']}[/]  input {'x'.join(map(str, report['input']))} · batch {report['batch']} · {report['dtype']}"
    if report.get("convention", "layercalc") != "layercalc":
        title += f" · counted as [bold]{report['convention']}[/]"
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("Layer", overflow="fold", ratio=1)
    if command == "shapes":
        table.add_column("Input shape", no_wrap=True)
    table.add_column("Output shape", no_wrap=True)
    for key in numbers:
        table.add_column(TITLES[key], justify="right", no_wrap=True)
    if share_key:
        table.add_column(f"% {TITLES[share_key]}", no_wrap=True)
    rows = report["layers"]
    for i, row in enumerate(rows):
        # a row is a block when the next row is deeper (derived: no layer type is named here)
        block = i + 1 < len(rows) and rows[i + 1]["depth"] > row["depth"]
        # the path says where a nested layer sits (layer1.0.body.3); top-level paths are names
        name = Text("  " * row["depth"] + row["path"], style="bold" if block else "")
        name.append(f" {row['type']}", style="magenta" if not block else "dim magenta")
        if row.get("copies", 1) > 1:  # a folded repeat tail: one row for many identical copies
            name.append(f" ×{row['copies']:,}", style="bold")
        cells: list[Any] = [name]
        if command == "shapes":
            cells.append("x".join(map(str, row["input_shape"])))
        cells.append("x".join(map(str, row["output_shape"])))
        cells += [_number(row[k]) for k in numbers]
        if share_key:
            cells.append(bar(row[share_key] / total[share_key]) if total[share_key] and row[share_key] else "")
        table.add_row(*cells, style="dim" if block else None)
    out.print(table)
    out.print(footer(report))


def _number(n: int | None) -> Text:
    if n is None:
        return Text("not counted", style="dim italic")
    return Text(human(n) if n else "—", style="" if n else "dim")


def footer(report: dict[str, Any]) -> Table:
    """Totals with exact integers and human units, and memory for the dtype and batch."""
    t = report["total"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    grid.add_row("Total params", f"{t['params']:,}", human(t["params"]))
    grid.add_row("Buffers", f"{t['buffers']:,}", "non-trainable")
    convention = report.get("convention", "layercalc")
    counted = "" if convention == "layercalc" else f", as {convention} counts"
    for key, note in (("macs", ""), ("flops", " (2 per MAC)")):
        value = t[key]
        grid.add_row(TITLES[key], "not counted" if value is None else f"{value:,}",
                     ("" if value is None else human(value)) + note + counted)
    grid.add_row("Param memory", human_bytes(t["param_bytes"]), report["dtype"])
    grid.add_row("Activation memory", human_bytes(t["activation_bytes"]), f"batch {report['batch']}, forward outputs")
    if t.get("kv_cache_bytes"):
        grid.add_row("KV cache", human_bytes(t["kv_cache_bytes"]), f"batch {report['batch']}, keys and values of every position")
    training = report.get("training")
    if training:
        grid.add_row("Backward MACs", f"{training['backward_macs']:,}", human(training["backward_macs"]))
        grid.add_row("Training FLOPs", f"{training['training_flops']:,}", "forward + backward, 2 per MAC")
        grid.add_row("Gradients", human_bytes(training["gradient_bytes"]), "one per parameter")
        grid.add_row("Optimizer state", human_bytes(training["optimizer_bytes"]), training["optimizer"])
        grid.add_row("Training memory", human_bytes(training["training_bytes"]),
                     "params + gradients + optimizer + kept activations")
    return grid


def render_compare(data: dict[str, Any], out: Console) -> None:
    """flops --compare: MACs per op category under every convention, totals last."""
    conventions = list(data["total"])
    # exact integers need ~106 columns; a narrower terminal gets 4-digit units and the exact totals below
    exact = out.width >= 110
    table = Table(title=f"[bold]{data['name']}[/]  MACs as each tool counts them · batch {data['batch']}",
                  box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, padding=(0, 1))
    table.add_column("Category", no_wrap=True)
    for c in conventions:
        table.add_column(c, justify="right", no_wrap=True)
    for row in data["rows"]:
        table.add_row(row["category"], *(_cell(row[c], exact) for c in conventions))
    table.add_row(Text("total", style="bold"), *(_cell(data["total"][c], exact, bold=True) for c in conventions))
    out.print(table)
    if not exact:
        out.print("exact totals: " + ", ".join(f"{c} {data['total'][c]:,}" for c in conventions if data["total"][c] is not None))
    out.print(Text("torch = FlopCounterMode / 2; — = not counted: the tool skips (or warns about) that op", style="dim"))


def _cell(n: int | None, exact: bool, bold: bool = False) -> Text:
    if n is None:
        return Text("—", style="dim")
    return Text(f"{n:,}" if exact else human(n).replace(" ", ""), style="bold" if bold else "")


def render_catalog(rows: list[dict[str, Any]], out: Console) -> None:
    """The layer catalog: type, arguments with defaults, what it does."""
    table = Table(title="[bold]layercalc layer types[/]", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("Type", style="magenta", no_wrap=True)
    table.add_column("Arguments")
    table.add_column("What it does", style="dim")
    for row in rows:
        table.add_row(row["type"], ", ".join(row["arguments"]) or "—", row["summary"])
    out.print(table)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr naming the layer being checked; yields advance(name, i, n)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("[cyan]{task.description}"), console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def advance(name: str, i: int, n: int) -> None:
            bar.update(task, description=name, completed=i, total=n)

        yield advance

