"""The arguments column, --columns in every format, and how a table makes room: hand-computed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from layercalc.api import analyse_layers, report_data
from layercalc.layers import REGISTRY
from layercalc.render.layout import fit_name, plan
from layercalc.render.table import console, render_table

# linear 3 -> 2 then linear 2 -> 4, batch 1, float32:
#   params 3·2 + 2 = 8 and 2·4 + 4 = 12 (total 20); MACs 3·2 = 6 and 2·4 = 8 (total 14)
#   activation bytes 2·4 = 8 and 4·4 = 16 (total 24)
TWO = ["-l", "linear:out_features=2", "-l", "linear:out_features=4", "--input", "3"]


def _brief(specs: list[str], shape: str) -> list[str]:
    rows = report_data(analyse_layers(specs, shape))["layers"]
    return [r["arguments"] for r in rows]


@pytest.mark.parametrize(
    "spec, shape, expected",
    [
        # resnet's stem: 3 channels in, 64 out, kernel 7, stride 2, padding 3, no bias
        ("conv2d:out_channels=64,kernel_size=7,stride=2,padding=3,bias=false", "3x224x224", "3→64 k7 s2 p3 no_bias"),
        ("conv2d:out_channels=8,kernel_size=3x5,padding=same", "3x8x8", "3→8 k3x5 p=same"),
        ("conv2d:out_channels=8,kernel_size=3,stride=1x1", "3x8x8", "3→8 k3"),  # [1, 1] is the default 1
        ("conv2d:out_channels=32,kernel_size=3,groups=32", "32x8x8", "32→32 k3 g32"),
        ("maxpool2d:kernel_size=3,stride=2,padding=1", "3x8x8", "k3 s2 p1"),
        ("maxpool2d:kernel_size=2", "3x8x8", "k2"),  # stride null: worked out, so not shown
        ("linear:out_features=1000", "512", "512→1000"),
        ("relu", "4", ""),
        ("dropout:p=0.2", "4", "p=0.2"),
        ("gelu:approximate=tanh", "4", "tanh"),  # a mode reads as itself
        # 10 features in, hidden 20 both ways: 40 out
        ("lstm:hidden_size=20,num_layers=2,bidirectional=true", "5x10", "10→40 h20 layers=2 bidirectional"),
        ("flatten:start_dim=2", "3x4x5", "start_dim=2"),
        # grouped-query attention over 16 tokens of 64 features: 4 heads, 2 kv heads, rotary
        ("attention:num_heads=4,num_kv_heads=2,rope=true", "16x64", "heads=4 kv_heads=2 rope"),
    ],
)
def test_arguments_are_the_non_default_ones_compact(spec: str, shape: str, expected: str) -> None:
    assert _brief([spec], shape) == [expected]


def test_renderers_never_name_a_layer_type() -> None:
    render = Path(__file__).resolve().parent.parent / "layercalc" / "render"
    for module in ("columns.py", "layout.py", "table.py", "formats.py"):
        text = (render / module).read_text()
        named = [t for t in REGISTRY if re.search(rf"[\"']{t}[\"']", text)]
        assert not named, (module, named)


def test_columns_in_the_order_given_in_tsv(cli) -> None:
    run = cli("summary", *TWO, "--columns", "flops,params,arguments", "-f", "tsv")
    assert run.status == 0 and run.err == ""
    assert run.out.splitlines() == [
        "path\tname\ttype\tdepth\tflops\tparams\targuments",
        "linear1\tlinear1\tlinear\t0\t12\t8\t3→2",
        "linear2\tlinear2\tlinear\t0\t16\t12\t2→4",
        "total\t\t\t\t28\t20\t",
    ]


def test_every_column_in_csv(cli) -> None:
    names = ("input_shape,output_shape,arguments,params,params_percent,buffers,macs,flops,macs_percent,"
             "activation_bytes,trainable")
    run = cli("params", *TWO, "--columns", names, "-f", "csv")
    # shares: params 8/20 = 40 %, 12/20 = 60 %; MACs 6/14 = 42.857 %, 8/14 = 57.143 %
    assert run.out.splitlines() == [
        "path,name,type,depth," + names,
        "linear1,linear1,linear,0,1x3,1x2,3→2,8,40.00,0,6,12,42.86,8,true",
        "linear2,linear2,linear,0,1x2,1x4,2→4,12,60.00,0,8,16,57.14,16,true",
        "total,,,,,,,20,,0,14,28,,24,",
    ]


def test_torchinfo_names_and_markdown(cli) -> None:
    run = cli("flops", *TWO, "--columns", "mult_adds, num_params", "-f", "markdown")
    assert run.out.splitlines()[:3] == [
        "| path | name | type | depth | macs | params |", "|---|---|---|---|---|---|",
        "| linear1 | linear1 | linear | 0 | 6 | 8 |",
    ]


def test_backward_macs_column_with_training(cli) -> None:
    # the first linear needs no dL/dx: dW only, 6; the second dW 8 + dx 8 = 16
    run = cli("flops", *TWO, "--training", "--columns", "backward_macs,macs", "-f", "tsv")
    assert run.out.splitlines()[1:] == ["linear1\tlinear1\tlinear\t0\t6\t6", "linear2\tlinear2\tlinear\t0\t16\t8",
                                        "total\t\t\t\t22\t14"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--columns", "parms"], "--columns: unknown column 'parms' (did you mean 'params'?); choose from input_shape,"),
        (["--columns", "params,flop"], "--columns: unknown column 'flop' (did you mean 'flops'?)"),
        (["--columns", "params,params"], "--columns: 'params' is named twice"),
        (["--columns", "path,params,path"], "--columns: 'path' is named twice"),
        # a repeated --columns kept the last list silently: refused, as a config refuses a duplicate key
        (["--columns", "params", "--columns", "buffers"], "--columns is given 2 times; give one comma-separated list"),
        (["--columns", "backward_macs"], "--columns: backward_macs needs --training"),
        (["--columns", "params", "--total"], "--columns chooses a table's columns; it does not combine with --total"),
        (["--columns", "params", "--by-type"], "--by-type gives one row per layer type; it does not combine with --columns"),
    ],
)
def test_bad_columns_are_one_line_errors(cli, args: list[str], message: str) -> None:
    run = cli("params", *TWO, *args)
    assert run.status == 2 and run.out == ""
    assert run.err.startswith(f"error: {message}") and run.err.count("\n") == 1, run.err


@pytest.mark.parametrize("columns", ["path,params,macs", "params,name,macs", "params,macs,depth", "type,params,path,macs,name,depth"])
@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_identity_columns_are_accepted_anywhere(cli, columns: str, fmt: str) -> None:
    """path, name, type and depth lead every row already: naming them anywhere is no error (it exited 2)."""
    run = cli("summary", *TWO, "--columns", columns, "-f", fmt)
    sep = "\t" if fmt == "tsv" else ","
    assert run.status == 0, run.err
    assert run.out.splitlines() == [sep.join(line) for line in (
        ["path", "name", "type", "depth", "params", "macs"],
        ["linear1", "linear1", "linear", "0", "8", "6"],
        ["linear2", "linear2", "linear", "0", "12", "8"],
        ["total", "", "", "", "20", "14"],
    )]


def test_compare_takes_no_columns(cli) -> None:
    run = cli("flops", *TWO, "--compare", "--columns", "macs")
    assert run.status == 2 and "does not combine with --columns" in run.err


def _table(specs: list[str], shape: str, command: str, width: int, columns: tuple[str, ...] | None = None) -> list[str]:
    buf = io.StringIO()
    render_table(report_data(analyse_layers(specs, shape)), command, console(buf, width=width), columns)
    return buf.getvalue().splitlines()


def test_table_columns_in_the_order_given() -> None:
    lines = _table(["linear:out_features=2", "linear:out_features=4"], "3", "summary", 200, ("flops", "trainable", "params_percent", "arguments"))
    assert lines[2].split() == ["Layer", "FLOPs", "Trainable", "%", "Params", "Arguments"]
    # the share bar: 40 % of 8 cells is 3.2 cells = 3 full and 2/8 (▎)
    assert lines[4].split() == ["linear1", "linear", "12", "yes", "███▎", "40.0%", "3→2"]


def test_explicit_columns_stay_and_names_shorten() -> None:
    from layercalc.api import analyse

    data = report_data(analyse(str(Path(__file__).resolve().parent.parent / "configs" / "resnet18.yaml")))
    asked = ("macs", "params", "flops", "output_shape", "arguments")

    def table(width: int) -> list[str]:
        buf = io.StringIO()
        render_table(data, "summary", console(buf, width=width), asked)
        return buf.getvalue().splitlines()

    # the columns need 2 + 6 (57.8 M), 2 + 6 (74.0 K), 2 + 6 (1.02 M), 2 + 12 (1x64x112x112) and
    # 2 + 24 (128→256 k3 s2 p1 no_bias) = 64; the longest name, "      layer2.0.0.shortcut.1
    # batchnorm2d", 41. At 90 the names get 90 - 1 - 64 = 25 and every column asked for stays
    lines = table(90)
    assert lines[2].split() == ["Layer", "MACs", "Params", "FLOPs", "Output", "shape", "Arguments"]
    assert len(lines[3]) == 90 and all(len(line) <= 90 for line in lines)
    assert not any("hidden" in line for line in lines) and any("…" in line for line in lines)
    # at 70 even names of 16 leave no room (1 + 16 + 64 = 81): the last asked goes, and is said;
    # the names get 70 - 1 - 38 = 31
    lines = table(70)
    assert lines[2].split() == ["Layer", "MACs", "Params", "FLOPs", "Output", "shape"]
    assert len(lines[3]) == 70 and "hidden to fit 70 columns: Arguments (see --columns)" in lines


def test_plan_drops_optional_columns_before_names_shorten() -> None:
    # name 30 wide; columns 12, 20, 6, 6, 15: 1 + 30 + (14 + 22 + 8 + 8 + 17) = 100 characters
    widths = [12, 20, 6, 6, 15]
    assert plan(30, widths, 100, optional=[4, 1]) == (list(range(5)), 30, [])
    # at 80: the share (17) goes, 83 > 80, then the arguments (22): 61 fits, names whole
    assert plan(30, widths, 80, optional=[4, 1]) == ([0, 2, 3], 30, [4, 1])
    # at 50: with both gone 61 > 50; names of 16 would fit (1 + 16 + 30 = 47), so the core stays
    # and the names get 50 - (1 + 14 + 8 + 8) = 19 characters
    assert plan(30, widths, 50, optional=[4, 1], core=[0]) == ([0, 2, 3], 19, [4, 1])
    # at 40: 1 + 16 + 30 = 47 > 40, so the first core column (the shape, 14) goes: 1 + 16 + 16 = 33;
    # names get 40 - 17 = 23
    assert plan(30, widths, 40, optional=[4, 1], core=[0]) == ([2, 3], 23, [4, 1, 0])


def test_fit_name_shortens_the_path_in_the_middle() -> None:
    # 3 levels at 2 spaces + 17 + 12 = 35 <= 40: untouched
    assert fit_name(3, "layer1.0.0.body.1", " batchnorm2d", 40) == ("      ", "layer1.0.0.body.1", " batchnorm2d")
    # one space a level: 3 + 17 + 12 = 32 > 30, so the path gets 30 - 3 - 12 = 15: 7 + "…" + 7
    assert fit_name(3, "layer1.0.0.body.1", " batchnorm2d", 30, step=1) == ("   ", "layer1.….body.1", " batchnorm2d")
    # 14 wide: the path keeps 8 ("laye" + "…" + "y.1"), the indent goes, the type gets 14 - 8 - 1 = 5
    assert fit_name(3, "layer1.0.0.body.1", " batchnorm2d", 14, step=1) == ("", "laye…y.1", " ba…2d")
    # a folded repeat keeps its count: 20 = 8 ("fc.1…999") + 1 + 2 ("l…" of linear) + 9 (" ×999,999")
    assert fit_name(1, "fc.1-999999", " linear ×999,999", 20) == ("", "fc.1…999", " l… ×999,999")


def test_narrow_default_table_says_what_it_hid() -> None:
    # linear1 linear (14) + output 12, arguments 9, params 6, MACs 4, FLOPs 5, share 15, each after 2:
    # 78 > 40; without the share, FLOPs and arguments 43 > 40 still, and names of 14 cannot shrink
    # below themselves, so the output shape goes too: 1 + 14 + 8 + 6 = 29
    lines = _table(["linear:out_features=2"], "3", "summary", 40)
    assert lines[2].split() == ["Layer", "Params", "MACs"]
    assert lines[4].split() == ["linear1", "linear", "8", "6"]
    note = " ".join(lines[lines.index("") + 0:]).split("hidden", 1)[1]
    assert " ".join(note.split()).startswith("to fit 40 columns: Output shape, Arguments, FLOPs, % MACs (see --columns)")


def test_trainable_reads_a_rows_flag_and_defaults_to_true() -> None:
    from layercalc.render.columns import REGISTRY as COLUMNS, machine_cell, terminal_cell

    flag = COLUMNS["trainable"]
    assert (terminal_cell(flag, {}), machine_cell(flag, {}, {})) == ("yes", "true")  # rows without the field
    assert (terminal_cell(flag, {"trainable": False}), machine_cell(flag, {"trainable": False}, {})) == ("no", "false")


def test_the_command_line_fits_the_terminal_it_is_given() -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "COLUMNS": "60"}
    run = subprocess.run([sys.executable, "-m", "layercalc", "summary", "configs/resnet18.yaml", "-f", "table"],
                         capture_output=True, text=True, env=env, cwd=root)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and max(len(line) for line in lines) <= 60
    assert "    layer1.0.0.body.0 conv2d    1x64x56x56    36.9 K   116 M" in lines


def test_the_api_takes_columns_as_the_command_line_does() -> None:
    from layercalc.api import render

    report = analyse_layers(["linear:out_features=2", "linear:out_features=4"], "3")
    # params 8 and 12 (total 20), MACs 6 and 8 (total 14), as in the tsv above
    assert render(report, "tsv", columns=["macs", "params"]).splitlines()[1:] == [
        "linear1\tlinear1\tlinear\t0\t6\t8", "linear2\tlinear2\tlinear\t0\t8\t12", "total\t\t\t\t14\t20"]
    assert report.table(width=80, columns="params").splitlines()[2].split() == ["Layer", "Params"]


def test_json_rows_keep_their_place_and_the_columns_asked_for(cli) -> None:
    # linear 3 -> 2: 3·2 + 2 = 8 params; linear 2 -> 4: 2·4 + 4 = 12; 8 and 12 of 20 are 40 % and 60 %
    import json

    run = cli("params", *TWO, "--columns", "params_percent,params", "-f", "json")
    assert run.status == 0, run.err
    data = json.loads(run.out)
    assert [list(r) for r in data["layers"]] == [["path", "name", "type", "depth", "params_percent", "params"]] * 2
    assert [(r["params"], r["params_percent"]) for r in data["layers"]] == [(8, 40.0), (12, 60.0)]
    assert data["total"]["params"] == 20 and "buffers" in data["total"]  # the total keeps every field
