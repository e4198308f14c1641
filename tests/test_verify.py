"""verify: correct implementations pass; each classic backward bug, passed with --impl, fails
and is named. Expected verdicts come from the bug's definition, not from verify's output."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from layercalc import analyse
from layercalc.verify import Options, verify

ROOT = Path(__file__).resolve().parent.parent
IMPLS = Path(__file__).resolve().parent / "impls"
EXAMPLE_NET = str(ROOT / "examples" / "conv_net.yaml")

NETS = {
    "mlp": "input: [5]\nbatch: 3\nlayers:\n  - linear: {out_features: 4}\n    name: fc1\n  - tanh\n  - linear: {out_features: 2}\n    name: fc2\n",
    "bn": "input: [3, 6, 6]\nbatch: 4\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}\n  - batchnorm2d:\n    name: bn\n  - relu\n",
    "pool": "input: [2, 8, 8]\nbatch: 2\nlayers:\n  - conv2d: {out_channels: 2, kernel_size: 1}\n  - maxpool2d: {kernel_size: 2}\n    name: pool\n",
    "convt": "input: [3, 5, 5]\nlayers:\n  - convtranspose2d: {out_channels: 4, kernel_size: 3, stride: 2, padding: 1, output_padding: 1}\n    name: up\n  - relu\n",
}


def failures(out: str) -> list[dict[str, str]]:
    return [r for r in csv.DictReader(io.StringIO(out), delimiter="\t") if r["passed"] != "True"]


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples"))


@pytest.mark.parametrize(
    "impl, net, layer, check",
    [
        ("wrong_sign.py", "mlp", "fc1", "dL/dx"),
        ("conv_not_flipped.py", "example", "conv2", "dL/dx"),
        ("conv_stride_ignored.py", "example", "conv1", "dL/dx"),
        ("conv_bias_one_sample.py", "example", "conv1", "dL/dbias"),
        ("batchnorm_no_mean_terms.py", "bn", "bn", "dL/dx"),
        ("maxpool_all_ties.py", "pool", "pool", "dL/dx = reference"),
        ("convtranspose_off_by_one.py", "convt", "up", "dL/dx"),
    ],
)
def test_wrong_backward_is_caught_and_named(cli, write, impl: str, net: str, layer: str, check: str) -> None:
    config = EXAMPLE_NET if net == "example" else write(f"{net}.yaml", NETS[net])
    run = cli("verify", config, "--impl", str(IMPLS / impl), "-f", "tsv")
    assert run.status == 1, run.err
    failed = failures(run.out)
    assert any(r["path"] == layer and r["check"] == check for r in failed), failed


def test_the_hand_written_example_passes(cli) -> None:
    run = cli("verify", EXAMPLE_NET, "--impl", str(ROOT / "examples" / "my_conv2d.py"), "-f", "tsv")
    assert run.status == 0 and failures(run.out) == []
    checks = {r["check"] for r in csv.DictReader(io.StringIO(run.out), delimiter="\t")}
    assert {"dL/dx = reference", "vec(x ⋆ k) = K_conv · vec(x)", "∇x = ∇y ⋆full flipped k"} <= checks


def test_reference_named_as_module_attr_passes(cli, write) -> None:
    run = cli("verify", write("bn.yaml", NETS["bn"]), "--impl", "layercalc.layers.norm:BatchNorm2d", "-f", "tsv")
    assert run.status == 0 and failures(run.out) == []


def test_impl_errors_are_one_line(cli, write) -> None:
    bad = write("bad_impl.py", "raise RuntimeError('boom')\n")
    run = cli("verify", write("n.yaml", NETS["mlp"]), "--impl", bad)
    assert run.status == 2 and run.err == f"error: --impl {bad}: importing it failed: RuntimeError: boom\n"
    run = cli("verify", write("n2.yaml", NETS["mlp"]), "--impl", "layercalc.layers.blocks:Residual")
    assert run.status == 2 and "implement a leaf type" in run.err


def test_every_layer_every_block_and_the_network_are_checked() -> None:
    text = (
        "input: [3, 8, 8]\nbatch: 2\nlayers:\n"
        "  - residual: {body: [{conv2d: {out_channels: 3, kernel_size: 3, padding: 1}}, relu]}\n    repeat: 2\n"
        "  - concat: {branches: [[], [{conv2d: {out_channels: 2, kernel_size: 1}}]]}\n"
        "  - flatten\n  - linear: {out_features: 4}\n"
    )
    result = verify(analyse(text))
    assert result.passed
    paths = {c.path for c in result.checks}
    rows = {r["path"] for r in analyse(text).rows()}
    assert paths == rows | {"(network)"}
    for c in result.checks:  # every check reports its error against a tolerance
        assert c.error <= c.tolerance or c.method == "exact"


def test_network_check_fails_when_a_block_merges_wrongly(monkeypatch) -> None:
    from layercalc.layers import REGISTRY

    monkeypatch.setattr(REGISTRY["residual"], "split", lambda self, dy, outs: [dy, 2 * dy])
    text = "input: [4]\nbatch: 2\nlayers:\n  - residual: {body: [{linear: {out_features: 4}}]}\n"
    result = verify(analyse(text))
    failed = {(c.path, c.check) for c in result.checks if not c.passed}
    assert ("residual1", "dL/d(x, params)") in failed and ("(network)", "dL/d(x, params)") in failed


def test_full_checks_every_element() -> None:
    text = "input: [3, 10, 10]\nlayers:\n  - conv2d: {out_channels: 8, kernel_size: 3}\n"
    result = verify(analyse(text), Options(full=True))
    methods = {c.check: c.method for c in result.checks}
    assert methods["dL/dweight"] == "elementwise" and methods["dL/dx"] == "elementwise"
    assert result.passed


def test_only_selects_layers(cli) -> None:
    run = cli("verify", str(ROOT / "configs" / "lenet5.yaml"), "--only", "c3", "-f", "tsv")
    rows = list(csv.DictReader(io.StringIO(run.out), delimiter="\t"))
    assert run.status == 0 and {r["path"] for r in rows} == {"c3"}


def test_float32_runs_in_float32_and_passes() -> None:
    from layercalc.verify import for_dtype, forward, plan
    from test_layers import CASES

    for entry, x_shape, *_ in CASES:
        report = analyse({"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]})
        root, _ = plan(report, for_dtype("float32"))
        y, _ = forward(root, np.random.default_rng(0).standard_normal(x_shape).astype("float32"))
        assert y.dtype == np.float32, entry
    assert verify(analyse((ROOT / "configs" / "lenet5.yaml").read_text()), for_dtype("float32")).passed


def _interrupt(args: list[str], after: bytes | None, env: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Ctrl-C once `after` shows on the terminal, or from the process itself with `after` None
    (stdout piped): (exit status, stdout, the terminal)."""
    import signal

    from terminal_process import signalled

    return signalled(args, signal.SIGINT, after, stdout_on_terminal=False, env=env)


def test_sigint_exits_130_without_traceback(tmp_path) -> None:
    status, out, seen = _interrupt(["verify", str(ROOT / "configs" / "resnet18.yaml"), "-f", "tsv"], b"verify")
    assert status == 130 and b"Traceback" not in seen


def test_sigint_prints_the_checks_done_so_far(tmp_path) -> None:
    """Ctrl-C once the batch-2 copies run (the network's pass is done): its rows are printed, the
    summary says the run was interrupted and how much did not run, exit 130. The signal comes from
    the max-pool's first batch-2 forward, so it lands mid-run however fast the machine: a signal
    sent on seeing '@ batch 2' could land after the last copy had finished."""
    args = ["verify", str(ROOT / "configs" / "resnet18.yaml"), "-f", "tsv", "--impl", str(IMPLS / "signals_at_batch_2.py")]
    status, out, seen = _interrupt(args, None, env={"LAYERCALC_TEST_SIGNAL": "INT"})
    assert status == 130 and b"Traceback" not in seen
    done = list(csv.DictReader(io.StringIO(out), delimiter="\t"))
    assert any(r["path"] == "(network)" and r["check"] == "dL/d(x, params)" for r in done)
    assert all(r["passed"] == "True" for r in done)
    # conv1, bn1 and relu1 at batch 2 ran before the max-pool's copy (and stand for the layers
    # identical to them); the max-pool and the 16 copies after it did not
    copies = {r["path"] for r in done if r["check"].endswith("@ batch 2")}
    assert {"conv1", "bn1", "relu1"} <= copies and "maxpool2d1" not in copies and "fc" not in copies
    assert b"interrupted (Ctrl-C): 17 of 21 layers, blocks and copies not checked" in seen.replace(b"\r\n", b"")


def test_impl_that_raises_is_a_failed_check_naming_the_layer(cli, write) -> None:
    config = write("one.yaml", "input: [5]\nbatch: 3\nlayers:\n  - linear: {out_features: 4}\n    name: fc1\n")
    run = cli("verify", config, "--impl", str(IMPLS / "linear_raises.py"), "-f", "tsv")
    assert run.status == 1, run.err  # the user's bug: a failed check, not layercalc's internal error (70)
    errors = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert errors == ["error: fc1 (linear): backward() raised ValueError: shapes (3,4) and (5,) not aligned"]
    assert "Traceback" not in run.err
    failed = failures(run.out)
    assert [(r["path"], r["method"]) for r in failed] == [("fc1", "raised")]
    debug = cli("verify", config, "--impl", str(IMPLS / "linear_raises.py"), "-f", "tsv", "--debug")
    assert debug.status == 1 and "Traceback" in debug.err and "linear_raises.py" in debug.err


def test_network_check_over_budget_is_skipped_and_said(cli, write) -> None:
    # eight 256 -> 256 linears: each layer's check holds well under 2 MB, the whole network's over 4 MB
    layers = "".join("  - linear: {out_features: 256}\n" for _ in range(8))
    config = write("deep.yaml", f"input: [256]\nlayers:\n{layers}")
    run = cli("verify", config, "--max-memory", "4M", "-f", "tsv")
    assert run.status == 0, run.err
    assert "(network)" not in {r["path"] for r in csv.DictReader(io.StringIO(run.out), delimiter="\t")}
    assert "skipped: (network) end to end: needs about" in run.err and "1 skipped" in run.err
    table = cli("verify", config, "--max-memory", "4M", "-f", "table")
    assert "SKIPPED (network)" in table.out and "1 skipped" in table.out


def test_identical_layers_are_checked_once_and_reported_everywhere() -> None:
    text = ("input: [4, 6, 6]\nlayers:\n"
            "  - residual: {body: [{conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}, relu]}\n    repeat: 3\n")
    result = verify(analyse(text))
    assert result.passed
    rows = {r["path"] for r in analyse(text).rows()}
    assert {c.path for c in result.checks} == rows | {"(network)"}
    twins = [c for c in result.checks if c.path == "residual1.2.body.0"]
    assert twins and all(c.note.startswith("same as residual1.0.body.0") for c in twins)
    assert result.deduplicated == sum(c.note.startswith("same as ") for c in result.checks) > 0
    assert f"{len(result.checks) - result.deduplicated} checks run, {result.deduplicated} more reported" in result.summary()


def test_impl_that_raises_inside_a_network_leaves_the_other_layers_checked(cli, write) -> None:
    config = write("n.yaml", "input: [3, 8, 8]\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 3}\n  - relu\n"
                             "  - flatten\n  - linear: {out_features: 3}\n    name: fc\n")
    run = cli("verify", config, "--impl", str(IMPLS / "linear_raises.py"), "-f", "tsv")
    assert run.status == 1
    rows = list(csv.DictReader(io.StringIO(run.out), delimiter="\t"))
    assert [(r["path"], r["method"]) for r in rows if r["passed"] != "True"] == [("fc", "raised")]
    assert {"conv2d1", "relu1", "flatten1"} <= {r["path"] for r in rows if r["method"].startswith("direction")}
    assert "skipped: (network) end to end: contains fc, whose implementation failed" in run.err
