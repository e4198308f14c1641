"""The command line's values, read back: machine formats' total rows, dtype byte sizes, --convention,
--compare, --training/--optimizer, folded repeats, and verify's JSON with --seed/--rtol/--atol/--dtype.
Every expected number is worked out by hand below, or read from figures recorded from the real tools."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from layercalc import analyse
from layercalc.errors import UsageError
from layercalc.layers import REGISTRY

FIGURES = json.loads((Path(__file__).resolve().parent / "reference" / "figures.json").read_text())
IMPLS = Path(__file__).resolve().parent / "impls"
RESNET18 = str(Path(__file__).resolve().parent.parent / "configs" / "resnet18.yaml")

# batch 2, 4 -> 8 -> relu -> 3, float64:
#   params  fc1 4·8 + 8 = 40, fc2 8·3 + 3 = 27, total 67; no buffers
#   MACs    fc1 2·4·8 = 64, fc2 2·8·3 = 48, total 112; FLOPs 224
#   outputs 2·8 + 2·8 + 2·3 = 38 elements; 8 bytes each = 304; params 67·8 = 536 bytes
NET = """\
name: tiny
input: [4]
batch: 2
dtype: float64
layers:
  - linear: {out_features: 8}
    name: fc1
  - relu
  - linear: {out_features: 3}
    name: fc2
"""


@pytest.fixture
def net(write) -> str:
    return write("tiny.yaml", NET)


def parse(fmt: str, text: str) -> list[dict[str, str]]:
    """Rows of a csv/tsv/markdown table as dicts by header."""
    if fmt == "markdown":
        lines = [ln.strip().strip("|").split(" | ") for ln in text.splitlines()]
        header, rows = [h.strip() for h in lines[0]], lines[2:]
        return [dict(zip(header, (c.strip() for c in r))) for r in rows]
    return list(csv.DictReader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ","))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "markdown"])
@pytest.mark.parametrize(
    "command, expected",
    [
        ("summary", {"params": "67", "macs": "112", "flops": "224"}),
        ("params", {"params": "67", "trainable_params": "67", "buffers": "0"}),
        ("flops", {"macs": "112", "flops": "224"}),
    ],
)
def test_machine_formats_total_row(cli, net, fmt: str, command: str, expected: dict[str, str]) -> None:
    rows = parse(fmt, cli(command, net, "--format", fmt).out)
    assert [r["path"] for r in rows] == ["fc1", "relu1", "fc2", "total"]
    total = rows[-1]
    assert {k: total[k] for k in expected} == expected
    if command == "flops":  # the layer rows, too: 64, 0, 48 MACs
        assert [r["macs"] for r in rows[:-1]] == ["64", "0", "48"]


def test_json_totals_and_bytes(cli, net) -> None:
    data = json.loads(cli("summary", net, "--format", "json").out)
    # every param trainable; input 2·4 values · 8 bytes = 64; estimated total 64 + 304 + 536 = 904
    assert data["total"] == {"params": 67, "trainable_params": 67, "frozen_params": 0, "buffers": 0, "macs": 112,
                             "flops": 224, "activation_bytes": 304, "param_bytes": 536, "input_bytes": 64,
                             "estimated_total_bytes": 904}
    assert [r["activation_bytes"] for r in data["layers"]] == [2 * 8 * 8, 2 * 8 * 8, 2 * 3 * 8]


@pytest.mark.parametrize("dtype, size", [("float64", 8), ("float32", 4), ("float16", 2), ("bfloat16", 2), ("int8", 1)])
def test_dtype_byte_sizes(cli, write, dtype: str, size: int) -> None:
    path = write("d.yaml", NET.replace("float64", dtype))
    total = json.loads(cli("summary", path, "--format", "json").out)["total"]
    assert (total["param_bytes"], total["activation_bytes"]) == (67 * size, 38 * size)


def test_markdown_escapes_pipes_in_names(cli, write) -> None:
    path = write("p.yaml", "input: [4]\nlayers:\n  - linear: {out_features: 2}\n    name: 'a|b'\n")
    text = cli("params", path, "--format", "markdown").out
    row = text.splitlines()[2]
    assert "a\\|b" in row and row.count(" | ") == 6  # seven cells: the pipe in the name is not a separator


# -- --training and --optimizer --------------------------------------------------------------------
# backward, batch 2: fc1 is the first layer, so no dL/dx: dW 2·4·8 = 64; relu 0;
# fc2: dL/dx 2·8·3 = 48 + dW 48 = 96; total 160. Training MACs 112 + 160 = 272, FLOPs 544.


def test_training_rows_skip_the_first_layers_input_gradient(cli, net) -> None:
    data = json.loads(cli("summary", net, "--training", "--format", "json").out)
    assert [r["backward_macs"] for r in data["layers"]] == [64, 0, 96]
    t = data["training"]
    assert (t["forward_macs"], t["backward_macs"], t["training_macs"], t["training_flops"]) == (112, 160, 272, 544)


@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("momentum", 1), ("adam", 2)])
def test_training_memory_fields(cli, net, optimizer: str, states: int) -> None:
    data = json.loads(cli("flops", net, "--training", "--optimizer", optimizer, "--format", "json").out)
    t = data["training"]
    # 67 params · 8 bytes = 536: weights, gradients, and `states` optimizer tensors; kept outputs 304
    assert t["optimizer"] == optimizer
    assert (t["param_bytes"], t["gradient_bytes"], t["optimizer_bytes"]) == (536, 536, states * 536)
    assert t["activation_bytes"] == 304
    assert t["training_bytes"] == (2 + states) * 536 + 304


def test_every_optimizer_the_cost_knows_is_offered_by_the_cli_and_the_api(cli, net) -> None:
    from layercalc import api
    from layercalc.conventions import OPTIMIZER_STATES

    # the names come from one table: the CLI accepts them, the API checks them, adam by default
    report = api.analyse(net)
    for name in OPTIMIZER_STATES:
        assert json.loads(cli("flops", net, "--training", "--optimizer", name, "-f", "json").out)["training"]["optimizer"] == name
        assert api.report_data(report, training=True, optimizer=name)["training"]["optimizer"] == name
    assert cli("flops", net, "--training").out == cli("flops", net, "--training", "--optimizer", "adam").out
    with pytest.raises(UsageError, match="unknown optimizer 'adamw' \\(did you mean adam\\?\\)"):
        api.report_data(report, training=True, optimizer="adamw")


def test_training_total_and_machine_column(cli, net) -> None:
    assert cli("flops", net, "--training", "--total").out == "544\n"
    assert cli("flops", net, "--training", "--total", "--macs").out == "272\n"
    rows = parse("tsv", cli("flops", net, "--training", "--format", "tsv").out)
    assert [r["backward_macs"] for r in rows] == ["64", "0", "96", "160"]


def test_training_needs_a_costed_command(cli, net) -> None:
    run = cli("params", net, "--training")
    assert run.status == 2 and run.out == "" and "--training" in run.err


# -- --convention and --compare against the recorded tool totals ------------------------------------

STORED18 = FIGURES["conventions"]["config:resnet18"]["totals"]  # resnet18 at batch 1, from the tools


@pytest.mark.parametrize("tool", ["torch", "fvcore", "thop", "ptflops", "torchinfo"])
def test_convention_total_is_the_tools(cli, tool: str) -> None:
    data = json.loads(cli("summary", RESNET18, "--batch", "1", "--convention", tool, "--format", "json").out)
    assert data["convention"] == tool
    assert data["total"]["macs"] == STORED18[tool] and data["total"]["flops"] == 2 * STORED18[tool]
    assert cli("flops", RESNET18, "--batch", "1", "--convention", tool, "--total", "--macs").out == f"{STORED18[tool]}\n"
    if tool != "ptflops":  # ptflops divides its hook part by the batch once, over the total
        assert sum(r["macs"] or 0 for r in data["layers"] if r["depth"] == 0) == STORED18[tool]


def test_compare_columns_are_the_tools_and_rows_sum_to_them(cli) -> None:
    data = json.loads(cli("flops", RESNET18, "--batch", "1", "--compare", "--format", "json").out)
    assert (data["name"], data["batch"], data["unit"]) == ("resnet18", 1, "MACs")
    assert [r["category"] for r in data["rows"]] == [
        "conv/linear", "bias", "normalisation", "activations", "pooling", "residual adds"]
    assert {c: data["total"][c] for c in STORED18} == STORED18
    assert data["total"]["layercalc"] == analyse(RESNET18, batch=1).total["macs"]
    for c in ("layercalc", "torch", "fvcore", "thop", "torchinfo"):
        assert sum(r[c] or 0 for r in data["rows"]) == data["total"][c], c
    rows = parse("csv", cli("flops", RESNET18, "--batch", "1", "--compare", "--format", "csv").out)
    assert rows[-1]["category"] == "total" and int(rows[-1]["thop"]) == STORED18["thop"]


def test_compare_shows_a_category_no_one_listed(cli, net, monkeypatch) -> None:
    from layercalc.layers.peers import row

    # relu declares a cost in a new category: it must get its own row, and the rows must sum to the total
    monkeypatch.setattr(REGISTRY["relu"], "peer_counts", lambda self, x, y: [row("exotic", layercalc=100, thop=7)])
    data = json.loads(cli("flops", net, "--compare", "--format", "json").out)
    by = {r["category"]: r for r in data["rows"]}
    assert by["exotic"]["layercalc"] == 100 and by["exotic"]["thop"] == 7
    assert data["total"]["layercalc"] == 112 + 100
    for c in data["total"]:
        counted = [r[c] for r in data["rows"] if r[c] is not None]
        assert data["total"][c] == (sum(counted) if counted else None), c


# -- a huge repeat: every view answers at once, rows folded ---------------------------------------------

HUGE = """\
input: [6]
layers:
  - linear: {out_features: 6}
    name: fc
    repeat: 1000000000
"""


@pytest.mark.parametrize("command", ["summary", "params", "flops", "shapes"])
@pytest.mark.parametrize("fmt", ["json", "csv", "markdown", "table"])
def test_huge_repeat_every_view(cli, write, command: str, fmt: str) -> None:
    path = write("huge.yaml", HUGE)
    out = cli(command, path, "--format", fmt).out
    if fmt == "json":
        rows = json.loads(out)["layers"]
        # the group, its first copy, then one row for copies 1..999,999,999
        assert [r["path"] for r in rows] == ["fc", "fc.0", "fc.1-999999999"]
        assert rows[2]["copies"] == 999_999_999 and "copies" not in rows[1]
        # 6·6 + 6 = 42 params and 6·6 = 36 MACs a copy
        assert [r["params"] for r in rows] == [42 * 10**9, 42, 42 * 999_999_999]
        assert [r["macs"] for r in rows] == [36 * 10**9, 36, 36 * 999_999_999]
    else:
        assert "fc.1-999999999" in out
    compare = json.loads(cli("flops", path, "--compare", "--format", "json").out)
    assert compare["total"]["layercalc"] == sum(r["layercalc"] or 0 for r in compare["rows"]) == 36 * 10**9


def test_huge_repeat_with_depth_convention_and_training(cli, write) -> None:
    path = write("huge.yaml", "input: [6]\nlayers:\n  - linear: {out_features: 6}\n  - linear: {out_features: 6}\n"
                              "    name: fc\n    repeat: 1000000000\n")
    data = json.loads(cli("summary", path, "--training", "--convention", "torch", "--format", "json").out)
    rows = {r["path"]: r for r in data["layers"]}
    # every copy's input needs dL/dx (the first linear has parameters): 36 + 36 backward MACs each
    assert rows["fc.1-999999999"]["backward_macs"] == 72 * 999_999_999
    assert data["training"]["backward_macs"] == 36 + 72 * 10**9
    assert rows["fc"]["macs"] == rows["fc.0"]["macs"] * 10**9
    assert [r["path"] for r in json.loads(cli("params", path, "--depth", "0", "--format", "json").out)["layers"]] == ["linear1", "fc"]


def test_short_repeat_lists_every_copy(cli, write) -> None:
    path = write("r.yaml", "input: [6]\nlayers:\n  - linear: {out_features: 6}\n    name: fc\n    repeat: 100\n")
    rows = json.loads(cli("params", path, "--format", "json").out)["layers"]
    assert len(rows) == 101 and rows[-1]["path"] == "fc.99" and all("copies" not in r for r in rows)


# -- verify: --seed, --rtol, --atol, --dtype and its JSON ----------------------------------------------


def _verify(cli, *args: str) -> tuple[int, dict]:
    run = cli("verify", "-l", "linear:out_features=3", "--input", "4", "--format", "json", *args)
    return run.status, json.loads(run.out)


def test_verify_json_fields_and_counts(cli) -> None:
    status, data = _verify(cli)
    assert status == 0 and data["passed"] is True and data["failed"] == 0
    assert data["checks"] == len(data["results"])
    keys = {"path", "name", "type", "check", "method", "error", "tolerance", "passed", "note", "index", "numeric", "analytic"}
    assert all(set(r) == keys for r in data["results"])
    # a leaf and the network: output shape, params, dL/dx, dL/dweight, dL/dbias each
    assert {(r["path"], r["check"]) for r in data["results"]} >= {
        ("linear1", "output shape"), ("linear1", "params"), ("linear1", "dL/dx"), ("linear1", "dL/dweight"),
        ("linear1", "dL/dbias"), ("(network)", "output shape"), ("(network)", "dL/d(x, params)"),
    }


def test_verify_atol_and_rtol_set_the_tolerance(cli) -> None:
    def tolerances(*args: str) -> tuple[list[float], list[float]]:
        results = _verify(cli, *args)[1]["results"]
        return ([r["tolerance"] for r in results if r["method"] == "elementwise"],
                [r["tolerance"] for r in results if r["method"] == "direction"])

    # with rtol 0, a check allows atol plus the analytic side's own rounding: float64's is tiny;
    # float32 keeps the same atol (its rounding term, not a blanket tolerance, covers float32);
    # the elementwise checks are the layer's and its batch-2 copy's
    for args, atol in ((("--atol", "0.25"), 0.25), ((), 1e-8), (("--dtype", "float32"), 1e-8)):
        elementwise, direction = tolerances("--rtol", "0", *args)
        assert len(elementwise) == 6 and all(atol <= e for e in elementwise), args
        assert direction and all(atol <= t for t in direction), args
        if "float32" not in args:
            assert all(e <= atol + 1e-9 for e in elementwise + direction), args
    # rtol scales with the numbers (1e-5 by default, float32 too)
    elementwise, _ = tolerances("--atol", "0")
    big, _ = tolerances("--atol", "0", "--rtol", "1e-3")
    assert all(0 < e and abs(b / e - 100) < 1e-6 for e, b in zip(elementwise, big))


def test_verify_default_tolerance_catches_a_small_relative_error(cli) -> None:
    impl = str(IMPLS / "linear_dx_slightly_off.py")
    status, data = _verify(cli, "--impl", impl)  # default rtol 1e-5 < the 1e-4 error
    assert status == 1 and any(r["check"] == "dL/dx" and not r["passed"] for r in data["results"])
    status, _ = _verify(cli, "--impl", impl, "--rtol", "1e-3")
    assert status == 0


def test_verify_seed_changes_the_draw_and_repeats_it(cli) -> None:
    errors = lambda d: [r["error"] for r in d["results"] if r["method"] != "exact"]  # noqa: E731
    _, a = _verify(cli, "--seed", "1")
    _, b = _verify(cli, "--seed", "1")
    _, c = _verify(cli, "--seed", "2")
    assert errors(a) == errors(b) and errors(a) != errors(c)


def test_verify_dtype_float32_passes(cli) -> None:
    status, data = _verify(cli, "--dtype", "float32")
    assert status == 0 and data["passed"]


def test_compare_lists_categories_counted_by_no_tool(cli, write) -> None:
    # a concat is a copy and a residual's add is not counted by any tool: their rows say so (all empty)
    path = write("c.yaml", "input: [2, 4, 4]\nlayers:\n  - concat: {branches: [[], [relu]]}\n"
                           "  - residual: {body: [relu]}\n")
    data = json.loads(cli("flops", path, "--compare", "--format", "json").out)
    cats = {r["category"]: r for r in data["rows"]}
    assert {"concat", "residual adds"} <= set(cats)
    assert all(cats["concat"][c] is None for c in data["total"])


@pytest.mark.parametrize("command", ["summary", "params", "flops", "macs", "shapes"])
def test_help_names_only_options_the_command_takes(cli, monkeypatch, command: str) -> None:
    """Every --option a command's help mentions (its own list and inside help texts: 'backward_macs
    (with --training)') is one the command accepts; params listed --training, which it refuses."""
    import re

    import typer

    from layercalc.cli import app

    monkeypatch.setenv("COLUMNS", "250")  # no wrapping inside an option's name
    run = cli(command, "--help")
    assert run.status == 0, run.err
    accepted = {opt for param in typer.main.get_command(app).commands[command].params for opt in param.opts}
    accepted.add("--help")  # the context's own
    mentioned = set(re.findall(r"--[a-z][a-z-]*[a-z]", run.out))
    assert mentioned and mentioned <= accepted, sorted(mentioned - accepted)


def test_macs_is_the_macs_view_of_flops(cli, net: str) -> None:
    """`macs` exists (it was 'No such command'): MACs per layer, and --total prints MACs (NET: 64 + 0 + 48 = 112)."""
    assert cli("macs", net, "--total").out == "112\n"  # the fast path of launch.py
    assert cli("macs", net, "--total", "--batch", "2").out == "112\n"  # the same through the Typer app
    run = cli("macs", net, "-f", "tsv")
    assert run.out.splitlines() == ["path\tname\ttype\tdepth\tmacs", "fc1\tfc1\tlinear\t0\t64",
                                    "relu1\trelu1\trelu\t0\t0", "fc2\tfc2\tlinear\t0\t48", "total\t\t\t\t112"]
    # training: forward 112; backward fc1 dW 64 (its input is the network's: no dx), fc2 dW 48 + dx 48
    assert cli("macs", net, "--total", "--training").out == f"{112 + 64 + 96}\n"
    assert cli("macs", net, "--by-type", "-f", "tsv").out.splitlines() == [
        "type\tcount\tmacs", "linear\t2\t112", "relu\t1\t0", "total\t3\t112"]


def test_a_mistyped_command_gets_a_suggestion(cli) -> None:
    run = cli("mac", "x.yaml")
    assert run.status == 2 and run.out == ""
    assert run.err == "error: No such command 'mac'. Did you mean 'macs'?\n"


# relu then a 2x2 max-pool: FlopCounterMode has no rule for either, so it counts nothing and prints 0
UNCOUNTED = ["-l", "relu", "-l", "maxpool2d:kernel_size=2", "--input", "2x4x4", "--convention", "torch"]


def test_a_convention_that_counts_nothing_reports_0(cli, monkeypatch) -> None:
    """--total exited 2, tsv/csv dropped the total row and JSON said null: the total is 0, as the
    tool prints, while the rows stay 'not counted' (empty); the table's footer says why."""
    assert cli("flops", *UNCOUNTED, "--total").out == "0\n"
    assert cli("flops", *UNCOUNTED, "--total", "--macs").out == "0\n"
    assert cli("macs", *UNCOUNTED, "--total", "--training").out == "0\n"
    for fmt, sep in (("tsv", "\t"), ("csv", ",")):
        lines = cli("flops", *UNCOUNTED, "-f", fmt).out.splitlines()
        assert lines[1:] == [sep.join(r) for r in (["relu1", "relu1", "relu", "0", "", ""],
                                                   ["maxpool2d1", "maxpool2d1", "maxpool2d", "0", "", ""],
                                                   ["total", "", "", "", "0", "0"])]
        assert cli("flops", *UNCOUNTED, "--by-type", "-f", fmt).out.splitlines()[-1] == sep.join(["total", "2", "0", "0"])
    data = json.loads(cli("flops", *UNCOUNTED, "-f", "json").out)
    assert (data["total"]["macs"], data["total"]["flops"], data["uncounted"]) == (0, 0, True)
    assert [r["macs"] for r in data["layers"]] == [None, None]
    monkeypatch.setenv("COLUMNS", "120")
    table = cli("flops", *UNCOUNTED, "-f", "table").out
    assert "as torch prints: it counts none of these layers" in table
    # a network torch does count has no such note, and no `uncounted` key
    counted = cli("flops", "-l", "linear:out_features=2", "--input", "3", "--convention", "torch", "-f", "json").out
    assert "uncounted" not in json.loads(counted) and json.loads(counted)["total"]["macs"] == 6


def test_the_kv_cache_names_the_causal_layers_that_keep_it(cli, monkeypatch) -> None:
    """attention is causal by default (as HF's decoders), multiheadattention not (as PyTorch): the
    footer and JSON say which layers keep the KV cache, so an encoder written with attention shows why.
    By hand on T=4, E=8, 2 heads of d=4, batch 1, float32: attention 2·N·kv_heads·T·d = 2·1·2·4·4 = 64
    elements, three copies 192 (768 B); a causal multiheadattention 2·N·T·E = 64 (256 B); a plain one none."""
    specs = ["-l", "attention:num_heads=2,repeat=3", "-l", "multiheadattention:num_heads=2,causal=true",
             "-l", "multiheadattention:num_heads=2", "--input", "4x8"]
    data = json.loads(cli("summary", *specs, "-f", "json").out)
    assert data["total"]["kv_cache_bytes"] == 768 + 256
    assert data["kv_cache_layers"] == [{"type": "attention", "count": 3, "bytes": 768},
                                       {"type": "multiheadattention", "count": 1, "bytes": 256}]
    monkeypatch.setenv("COLUMNS", "200")
    table = cli("summary", *specs, "-f", "table").out
    assert "kept by the causal layers: 3 attention, 1 multiheadattention (causal: false for an encoder)" in table
    encoder = json.loads(cli("summary", "-l", "multiheadattention:num_heads=2", "--input", "4x8", "-f", "json").out)
    assert "kv_cache_bytes" not in encoder["total"] and "kv_cache_layers" not in encoder
