"""The command line: formats parse, --total is a bare integer, stdin, overrides, exit statuses."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from layercalc.layers import REGISTRY

# 784 -> 100 -> 10: params 784·100 + 100 + 100·10 + 10 = 79,510; MACs 784·100 + 100·10 = 79,400
MLP = """\
name: mlp
input: [1, 28, 28]
layers:
  - flatten
  - linear: {out_features: 100}
    name: fc1
  - relu
  - linear: {out_features: 10}
    name: fc2
"""
JSON_FIELDS = {
    "path", "name", "type", "arguments", "depth", "input_shape", "output_shape",
    "params", "buffers", "macs", "flops", "activation_bytes",
    "trainable", "trainable_params",  # issue 12: frozen layers
}


@pytest.fixture
def mlp(write) -> str:
    return write("mlp.yaml", MLP)


def test_total_is_a_bare_integer(cli, mlp) -> None:
    assert cli("params", mlp, "--total").out == "79510\n"
    assert cli("flops", mlp, "--total").out == f"{2 * 79400}\n"
    assert cli("flops", mlp, "--total", "--macs").out == "79400\n"


def test_batch_and_input_overrides(cli, mlp) -> None:
    assert cli("flops", mlp, "--total", "--macs", "--batch", "4").out == f"{4 * 79400}\n"
    # 1x14x14 -> 196 inputs: 196·100 + 100·10 MACs
    assert cli("flops", mlp, "--total", "--macs", "--input", "1x14x14").out == f"{196 * 100 + 1000}\n"


def test_json_has_the_spec_fields(cli, mlp) -> None:
    data = json.loads(cli("summary", mlp, "--format", "json").out)
    assert data["name"] == "mlp" and data["input"] == [1, 28, 28] and data["batch"] == 1
    assert data["dtype"] == "float32"
    assert [r["path"] for r in data["layers"]] == ["flatten1", "fc1", "relu1", "fc2"]
    assert all(set(r) == JSON_FIELDS for r in data["layers"])
    assert data["layers"][0]["output_shape"] == [1, 784]
    assert data["total"] == {
        "params": 79510, "buffers": 0, "macs": 79400, "flops": 158800,
        # outputs 784 + 100 + 100 + 10 elements, 4 bytes each
        "activation_bytes": (784 + 100 + 100 + 10) * 4, "param_bytes": 79510 * 4,
        # nothing frozen; the input 1·28·28 float32 values; input + activations + params
        "trainable_params": 79510, "frozen_params": 0, "input_bytes": 784 * 4,
        "estimated_total_bytes": 784 * 4 + (784 + 100 + 100 + 10) * 4 + 79510 * 4,
    }


@pytest.mark.parametrize("command", ["summary", "params", "flops", "shapes"])
@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")], ids=["csv", "tsv"])
def test_csv_and_tsv_have_one_header_row(cli, mlp, command, fmt, delimiter) -> None:
    rows = list(csv.reader(io.StringIO(cli(command, mlp, "--format", fmt).out), delimiter=delimiter))
    assert rows[0][:3] == ["path", "name", "type"]
    assert sum(r[0] == "path" for r in rows) == 1
    if command == "shapes":  # nothing to total: no empty total row
        assert len(rows) == 1 + 4 and rows[-1][0] == "fc2"
    else:
        assert len(rows) == 1 + 4 + 1  # header, four layers, total
        assert rows[-1][0] == "total"


def test_piped_default_is_tsv(cli, mlp) -> None:
    out = cli("params", mlp).out
    assert out.splitlines()[0] == "path\tname\ttype\tdepth\tparams\ttrainable_params\tbuffers"
    assert out.splitlines()[2].split("\t") == ["fc1", "fc1", "linear", "0", "78500", "78500", "0"]


def test_markdown(cli, mlp) -> None:
    lines = cli("flops", mlp, "-f", "markdown").out.splitlines()
    assert lines[0] == "| path | name | type | depth | macs | flops |"
    assert lines[1].startswith("|---")


def test_table_shows_exact_totals(cli, mlp) -> None:
    out = cli("summary", mlp, "-f", "table").out
    assert "79,510" in out and "79,400" in out and "fc2" in out


def test_stdin(cli) -> None:
    assert cli("params", "-", "--total", stdin=MLP).out == "79510\n"
    data = json.loads(cli("params", "-", "-f", "json", stdin=MLP.replace("name: mlp\n", "")).out)
    assert data["name"] == "stdin"


def test_inline_layers(cli) -> None:
    # conv 3->64, 7x7 stride 2 pad 3 on 224: 64·3·49 + 64 params
    run = cli("params", "--total", "--input", "3x224x224", "-l", "conv2d:out_channels=64,kernel_size=7,stride=2,padding=3", "-l", "relu")
    assert run.out == f"{64 * 3 * 49 + 64}\n"
    run = cli("shapes", "-f", "json", "--input", "3x8x8", "-l", "conv2d:out_channels=2,kernel_size=[3,1]")
    assert json.loads(run.out)["layers"][0]["output_shape"] == [1, 2, 6, 8]


def test_depth_folds_blocks(cli, write) -> None:
    path = write("res.yaml", "input: [4]\nlayers:\n  - residual: {body: [{linear: {out_features: 4}}, relu]}\n    repeat: 3\n")
    full = json.loads(cli("summary", path, "-f", "json").out)
    folded = json.loads(cli("summary", path, "-f", "json", "--depth", "0").out)
    assert len(full["layers"]) == 1 + 3 * 3  # the repeat row, 3 residual rows, 2 children each
    assert [r["path"] for r in folded["layers"]] == ["residual1"]
    assert full["total"] == folded["total"]
    assert [r["path"] for r in full["layers"][:3]] == ["residual1", "residual1.0", "residual1.0.body.0"]


def test_layers_lists_the_catalog(cli) -> None:
    out = cli("layers", "-f", "tsv").out
    types = [line.split("\t")[0] for line in out.splitlines()[1:]]
    assert types == list(REGISTRY)
    assert json.loads(cli("layers", "-f", "json").out)[0]["type"] == "linear"


def test_version(cli) -> None:
    from layercalc import __version__

    assert cli("--version").out == f"layercalc {__version__}\n"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["params", "missing.yaml"], "error: missing.yaml: no such file"),
        (["params"], "error: missing CONFIG"),
        (["params", "x.yaml", "--bogus"], "error: No such option: --bogus"),
        (["shapes", "x.yaml", "--total"], "error: No such option: --total (see 'layercalc shapes --help')"),
        (["params", "--input", "3x8", "--batch", "0", "-l", "relu"], "error: --batch must be >= 1"),
        (["params", "-l", "relu"], "error: --layer: --layer needs --input"),
    ],
)
def test_usage_errors_exit_2_with_one_line(cli, args, fragment) -> None:
    run = cli(*args)
    assert run.status == 2
    assert run.out == ""
    assert run.err.startswith(fragment) and run.err.count("\n") == 1


@pytest.mark.parametrize("args, usage", [
    ([], "Usage: layercalc [OPTIONS] COMMAND"),
    (["--debug"], "Usage: layercalc [OPTIONS] COMMAND"),
    (["import"], "Usage: layercalc import [OPTIONS] COMMAND"),
])
def test_a_command_without_its_subcommand_is_its_help(cli, args, usage) -> None:
    # a bare `layercalc` asks what it can do: the help, and success; so does a bare group
    run = cli(*args)
    assert run.status == 0 and run.err == "" and usage in run.out, run


def test_a_subcommand_usage_error_points_at_its_own_help(cli) -> None:
    run = cli("import", "hf")
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1
    assert run.err == "error: Missing argument 'PATH'. (see 'layercalc import hf --help')\n"


def test_config_error_names_file_line_and_layer(cli, write) -> None:
    path = write("bad.yaml", "input: [3, 7, 7]\nlayers:\n  - relu\n  - conv2d: {out_channels: 4, kernel_size: 9}\n    name: conv1\n")
    run = cli("summary", path)
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: {path}:4: layers[1] (conv2d 'conv1'): kernel_size 9 exceeds padded input 7x7\n"


def test_python_dash_m_and_broken_pipe(tmp_path) -> None:
    config = tmp_path / "mlp.yaml"
    config.write_text(MLP)
    run = subprocess.run([sys.executable, "-m", "layercalc", "params", str(config), "--total"], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "79510\n", "")
    # a reader that stops after one line must not produce a traceback
    big = tmp_path / "big.yaml"
    big.write_text("input: [8]\nlayers:\n  - linear: {out_features: 8}\n    repeat: 20000\n")
    cmd = f"{sys.executable} -m layercalc summary {big} | head -1"
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    assert run.stdout.startswith("path\t") and run.stderr == ""


def test_total_queries_take_the_fast_path_and_agree(cli, mlp, monkeypatch) -> None:
    from layercalc.launch import total_query

    assert total_query(["params", mlp, "--total"]) == (mlp, "params")
    assert total_query(["flops", "--macs", mlp, "--total"]) == (mlp, "macs")
    assert total_query(["params", mlp, "--total", "--batch", "2"]) is None  # anything else: the full CLI
    assert total_query(["shapes", mlp, "--total"]) is None
    # both paths give the same numbers: force the full CLI by adding a no-op option
    assert cli("flops", mlp, "--total", "--macs").out == cli("flops", mlp, "--total", "--macs", "--depth", "0").out
    assert cli("params", "missing.yaml", "--total").err == "error: missing.yaml: no such file\n"
