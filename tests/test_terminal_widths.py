"""Every view of every shipped config at 60, 80, 120 and 200 columns: nothing wraps, nothing spills.

Rendered through Rich's own width (Console(width=w) into a string); each config is analysed once
and its report reused across the views and widths, so the whole file stays fast.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from layercalc.api import analyse, catalog, compare_data, report_data
from layercalc.render.table import console, render_catalog, render_compare, render_table

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

WIDTHS = (60, 80, 120, 200)
CONFIG_NAMES = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
VIEWS = ("summary", "params", "flops", "shapes", "training")


@lru_cache(maxsize=None)
def _data(name: str) -> dict[str, Any]:
    report = analyse(str(CONFIGS / f"{name}.yaml"))
    return {"plain": report_data(report), "training": report_data(report, training=True), "compare": compare_data(report)}


def _render(draw, *args: Any, width: int) -> list[str]:
    buf = io.StringIO()
    draw(*args, console(buf, width=width))
    return buf.getvalue().splitlines()


def _path_matches(shown: str, path: str) -> bool:
    """A path as the table shows it: whole, or shortened in the middle with both ends kept."""
    if shown == path:
        return True
    if "…" not in shown:
        return False
    head, tail = shown.split("…", 1)
    return path.startswith(head) and path.endswith(tail) and len(head) + len(tail) < len(path)


def _body(lines: list[str]) -> list[str]:
    """The table's row lines: after the rule under the header, up to the first blank line."""
    start = next(i for i, line in enumerate(lines) if line.strip() and set(line.strip()) == {"─"}) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def _check_widths(lines: list[str], width: int) -> None:
    too_long = [line for line in lines if cell_len(line) > width]
    assert not too_long, f"{len(too_long)} lines longer than {width}: {too_long[:3]}"


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_view_fits_every_width(name: str) -> None:
    data = _data(name)
    for view in VIEWS:
        report = data["training"] if view == "training" else data["plain"]
        command = "summary" if view == "training" else view
        rows = report["layers"]
        for width in WIDTHS:
            lines = _render(render_table, report, command, width=width)
            where = f"{name} {view} at {width}"
            _check_widths(lines, width)
            body = _body(lines)
            # one line per row: no cell wrapped onto a line of its own
            assert len(body) == len(rows), where
            header = lines[lines.index(next(line for line in lines if line.startswith(" Layer")))]
            for line, row in zip(body, rows):
                # the path (perhaps shortened in the middle) opens the line, the type and numbers follow it
                shown = line.split()[0]
                assert _path_matches(shown, row["path"]), (where, shown, row["path"])
                if "Params" in header and row["params"]:
                    from layercalc.render.formats import human

                    assert human(row["params"]) in line, (where, line)
            total = report["total"]
            text = "\n".join(lines)
            assert f"Total params {total['params']:,}" in re.sub(r" +", " ", text), where
            if view == "training":
                assert f"{report['training']['training_flops']:,}" in text, where


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_compare_fits_every_width_with_exact_totals(name: str) -> None:
    data = _data(name)["compare"]
    for width in WIDTHS:
        lines = _render(render_compare, data, width=width)
        _check_widths(lines, width)
        # every convention's exact total is on a 'total' line of its block
        totals = " ".join(line for line in lines if line.lstrip().startswith("total"))
        for convention, value in data["total"].items():
            if value is not None:
                assert f"{value:,}" in totals, (name, width, convention)
        heads = " ".join(line for line in lines if line.lstrip().startswith("Category"))
        assert all(c in heads.split() for c in data["total"]), (name, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_catalog_fits_every_width(width: int) -> None:
    rows = catalog()
    lines = _render(render_catalog, rows, width=width)
    _check_widths(lines, width)
    starts = [line.split()[0] for line in _body(lines) if line[:2] != "  "]
    assert starts == [r["type"] for r in rows]  # every type on a line of its own, whole
    words = " ".join(_body(lines)).replace(",", " ").split()
    for r in rows:  # no argument broken across lines
        assert all(a.replace(" ", "") in words for a in r["arguments"]), r["type"]


def test_the_resnet18_example_at_80_columns() -> None:
    """The README's first command at 80 columns: the type beside its path, the extras hidden and said."""
    lines = _render(render_table, _data("resnet18")["plain"], "summary", width=80)
    assert lines[2].split() == ["Layer", "Output", "shape", "Params", "MACs"]
    assert "       layer1.0.0.body.0 conv2d           1x64x56x56    36.9 K   116 M" in lines
    assert any(line.startswith("hidden to fit 80 columns: Arguments, FLOPs, % MACs") for line in lines)
    # at 60 the names get 60 - 1 - (14 + 8 + 7) = 30 of the 41 the longest needs: one space a level
    # for every row (the dots still show the depth), and only the names still too long shorten
    lines = _render(render_table, _data("resnet18")["plain"], "summary", width=60)
    assert "    layer1.0.0.body.0 conv2d    1x64x56x56    36.9 K   116 M" in lines
    assert "    layer1.…body.1 batchnorm2d  1x64x56x56       128       —" in lines


def _options(command: str) -> set[str]:
    from layercalc.cli import app
    from typer.main import get_command

    group = get_command(app)
    cmd = group.get_command(None, command) if command else group  # type: ignore[attr-defined]
    return {o for p in cmd.params for o in p.opts if o.startswith("--")}


@pytest.mark.parametrize("command", ["summary", "params", "flops", "shapes", "verify", "kconv", "layers"])
def test_help_at_80_columns_breaks_no_option_or_metavar(command: str) -> None:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    env.pop("NO_COLOR", None)
    run = subprocess.run([sys.executable, "-m", "layercalc", command, "--help"], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and all(cell_len(line) <= 80 for line in lines)
    assert all(line.count("<") == line.count(">") for line in lines), run.stdout
    listed = set(re.findall(r"--[a-z][a-z-]*", run.stdout))
    assert _options(command) - {"--help"} <= listed  # every option's name whole on some line
