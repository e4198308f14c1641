"""verify at the limits: a check the system cannot allocate, a signal mid-run, huge repeats,
layers whose forward is many Python steps, reductions that must keep a layer valid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from layercalc import analyse
from layercalc.verify import Options, verify

ROOT = Path(__file__).resolve().parent.parent

THREE = "input: [6]\nlayers:\n  - linear: {out_features: 5}\n    name: a\n  - tanh\n  - linear: {out_features: 4}\n    name: b\n"


def test_a_check_that_cannot_allocate_is_skipped_and_the_rest_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MemoryError in one layer's check skips that check (said, with the error) and keeps every result."""
    import layercalc.verify as v

    real = v.check_instance

    def short_of_memory(inst: Any, *args: Any, **kwargs: Any) -> Any:
        if inst.path == "b" and args[-1:] == (" @ batch 2",):
            raise MemoryError("Unable to allocate 96.0 MiB for an array")
        return real(inst, *args, **kwargs)

    monkeypatch.setattr(v, "check_instance", short_of_memory)
    result = verify(analyse(THREE))
    skipped = [(s.path, s.check) for s in result.skipped]
    assert skipped == [("b", "every check @ batch 2")]
    assert "out of memory: Unable to allocate 96.0 MiB for an array" in result.skipped[0].reason
    # everything else ran: the network, a, tanh1 and b in the pass; a and tanh1 at batch 2
    assert {(c.path, c.check.endswith("@ batch 2")) for c in result.checks} == {
        ("(network)", False), ("a", False), ("tanh1", False), ("b", False), ("a", True), ("tanh1", True)}
    assert result.passed


def test_a_pass_that_cannot_allocate_checks_its_layers_on_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import layercalc.verify as v

    def short_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("Unable to allocate 22.3 GiB for an array")
        yield  # a generator, as check_network is

    monkeypatch.setattr(v, "check_network", short_of_memory)
    result = verify(analyse(THREE))
    assert [(s.path, s.check) for s in result.skipped] == [("(network)", "end to end")]
    # each layer the pass was to check, checked on its own instead, and every batch-2 copy
    assert {(c.path, c.check.endswith("@ batch 2")) for c in result.checks} == {
        (p, b) for p in ("a", "tanh1", "b") for b in (False, True)}
    assert all(c.passed for c in result.checks)


def test_out_of_memory_on_the_command_line_is_a_skip_not_an_internal_error(cli, write, monkeypatch) -> None:
    import layercalc.verify as v

    def short_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError()
        yield

    monkeypatch.setattr(v, "check_network", short_of_memory)
    run = cli("verify", write("three.yaml", THREE), "--max-memory", "100T", "-f", "tsv")
    assert run.status == 0, run.err
    assert "skipped: (network) end to end: out of memory: MemoryError (the memory budget is above" in run.err
    assert "internal error" not in run.err and "1 skipped, 0 failed" in run.err


HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"  # the terminal's cursor, hidden by the progress bar, shown again


def test_sigterm_stops_verify_as_ctrl_c_does() -> None:
    """SIGTERM on a terminal: the checks done so far, the summary saying so, the cursor back, exit
    143. The max-pool's first batch-2 forward sends it, so it lands mid-run however fast the machine
    (one sent on seeing '@ batch 2' could land after the last copy had finished)."""
    from terminal_process import signalled

    args = ["verify", "configs/resnet18.yaml", "--impl", "tests/impls/signals_at_batch_2.py"]
    status, _, seen = signalled(args, None, None, stdout_on_terminal=True, env={"LAYERCALC_TEST_SIGNAL": "TERM"})
    assert status == 143 and b"Traceback" not in seen
    assert HIDE in seen and seen.rindex(SHOW) > seen.rindex(HIDE)
    said = b" ".join(re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).split())  # the words, unstyled and unwrapped
    assert b"verify resnet18" in said and b"interrupted (SIGTERM): 17 of 21 layers, blocks and copies not checked" in said


def test_an_interrupted_run_has_not_passed(cli, write, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import layercalc.verify as v

    real = v.check_instance

    def interrupted(inst: Any, *args: Any, **kwargs: Any) -> Any:
        if args[-1:] == (" @ batch 2",):
            raise KeyboardInterrupt
        return real(inst, *args, **kwargs)

    monkeypatch.setattr(v, "check_instance", interrupted)
    result = verify(analyse(THREE))
    assert result.interrupted and result.checks and all(c.passed for c in result.checks)
    assert not result.passed and result.to_dict()["passed"] is False
    run = cli("verify", write("three.yaml", THREE), "-f", "json")
    data = json.loads(run.out)
    assert run.status == 130 and data["passed"] is False and data["interrupted"] == 3
    assert "interrupted (Ctrl-C): 3 of 4 layers, blocks and copies not checked" in data["summary"]


@pytest.mark.parametrize("budget", [72_000_000, 74_500_000])
def test_a_batch_2_copy_made_smaller_runs_its_own_layer(budget: int) -> None:
    """A conv on a huge input: the layer checked at a shorter input (kernel 3 kept), its batch-2 copy
    as a smaller copy (kernel 1 at 2x4, or half the output channels); that copy runs its own layer
    and parameters, not the other's (kernel 3 on a 2x4 input was an internal error)."""
    from layercalc.verify.planning import plan_tasks

    report = analyse("input: [1000, 1000000, 1000000]\nlayers:\n  - conv2d: {out_channels: 4, kernel_size: 3}\n")
    tasks, _ = plan_tasks(report, Options(max_memory=budget))
    one, two = tasks
    assert one.entry.layer.kernel_size == 3 and one.reduced.startswith("checked at input 1x1000x3x")
    assert two.batch2 and two.reduced.startswith("checked as a smaller copy, out_channels 2 (of 4)")
    result = verify(report, Options(max_memory=budget))
    assert result.passed and not result.skipped[1:]
    params = [c for c in result.checks if c.check == "params @ batch 2 (reduced)"]
    # the copy's own parameter arrays: 2 output channels, kernel 1 or 3, over 1000 input channels, and 2 biases
    k = two.entry.layer.kernel_size
    assert [c.note.split("; ")[-1] for c in params] == [f"arrays {2 * 1000 * k * k + 2:,}, calculated {2 * 1000 * k * k + 2:,}"]


def test_a_huge_repeat_is_reported_folded_as_the_calculator_shows_it(cli, write, monkeypatch: pytest.MonkeyPatch) -> None:
    """repeat: 10^9: one row per check for the identical rest, '.1-999999999' ×999,999,999 (the
    calculator's folded row), not 10,000 rows each and the rest lost."""
    import csv
    import io
    import json

    text = "input: [4]\nlayers:\n  - linear: {out_features: 4}\n    repeat: 1000000000\n"
    rows = {r["path"]: r.get("copies", 1) for r in analyse(text).rows()}
    assert rows == {"linear1": 1, "linear1.0": 1, "linear1.1-999999999": 999_999_999}  # the calculator's rows
    path = write("huge.yaml", text)
    run = cli("verify", path, "-f", "json")
    assert run.status == 0, run.err
    assert len(run.out) < 20_000  # was 12.8 MB: 10,000 copies listed one by one
    data = json.loads(run.out)
    folded = [r for r in data["results"] if r["path"] == "linear1.1-999999999"]
    # each check of the layer and of its batch-2 copy once, standing for the 999,999,999 copies
    checks = [r["check"] for r in data["results"] if r["path"] == "linear1.0"]
    assert [r["check"] for r in folded] == checks and len(checks) >= 6
    assert all(r["copies"] == 999_999_999 and r["note"].startswith("same as linear1.0 (×999,999,999)") for r in folded)
    assert {r["path"] for r in data["results"]} == set(rows) | {"linear1"}
    assert data["folded"] == len(folded) * 999_999_998  # the rows the copies beyond those listed would have had
    tsv = list(csv.DictReader(io.StringIO(cli("verify", path, "-f", "tsv").out), delimiter="\t"))
    assert len(tsv) == len(data["results"]) < 40
    monkeypatch.setenv("COLUMNS", "120")  # room for the whole path and its count
    table = cli("verify", path, "-f", "table", "--all").out
    assert table.count("linear1.1-999999999 ×999,999,999") == len(folded)


def test_folded_places_follow_the_calculators_rows_inside_blocks() -> None:
    """A block repeated 150 times: its distinct copies listed, the identical rest one place ×N, and
    the layers inside that place too; verify reports every row the calculator lists."""
    text = ("input: [3]\nlayers:\n  - residual: {body: [{linear: {out_features: 3}}, tanh]}\n    repeat: 150\n")
    rows = {r["path"]: r.get("copies", 1) for r in analyse(text).rows()}
    result = verify(analyse(text), Options(batch2=False))
    assert result.passed
    reported: dict[str, set[int]] = {}
    for c in result.checks:
        reported.setdefault(c.path, set()).add(c.copies)
    for p, n in rows.items():
        assert reported[p] == {n}, p
    tail = next(p for p, n in rows.items() if n > 1)  # 'residual1.1-149': 149 copies
    assert rows[tail] == 149 and reported[f"{tail}.body.0"] == {149}
    assert len(result.checks) < 60


def _lstm(num_layers: int) -> str:
    return f"input: [4, 3]\nlayers:\n  - lstm: {{hidden_size: 3, num_layers: {num_layers}}}\n"


def test_a_layer_of_many_python_steps_is_checked_as_a_quicker_copy() -> None:
    """A 10,000-layer LSTM on 4 steps: tiny in MACs, but every forward is 40,000 Python steps and its
    968 small tensors would each be checked element by element (about 2·960,012 forwards). It is
    taken out of the network's pass and checked as a copy with fewer layers on the same 4 steps."""
    from layercalc.verify.planning import MAX_STEPS, check_steps, plan_tasks

    report = analyse(_lstm(10_000))
    tasks, skipped = plan_tasks(report, Options())
    assert not skipped and [t.label for t in tasks] == ["(network)", "lstm1", "lstm1 @ batch 2"]
    assert tasks[0].inner == {}  # the pass over the network no longer checks the layer inside it
    for t in tasks[1:]:
        # elementwise: 2·(4·3 + 96·n) forwards of 4·n steps each; n = 19 runs 2·1,836·76 = 279,072
        # steps, above 10^5; n = 9 runs 2·876·36 = 63,072 (halving 10,000: ..., 39, 19, 9)
        assert t.entry.layer.num_layers == 9 and t.entry.input_shape[1] == 4
        assert t.reduced.startswith("checked as a smaller copy, num_layers 9 (of 10000): at its own size its check runs about ")
        assert check_steps(t.entry, Options()) <= MAX_STEPS < check_steps(report.entries[0], Options())
    # ten layers (2·(12 + 960)·40 = 77,760 steps) are checked whole, inside the pass
    tasks, _ = plan_tasks(analyse(_lstm(10)), Options())
    assert "lstm1" in tasks[0].inner and not any(t.reduced for t in tasks)


def test_shipped_recurrent_configs_are_checked_whole() -> None:
    from layercalc.verify.planning import plan_tasks

    for name in ("lstm_tagger", "gru_classifier", "lstm_lm"):
        tasks, _ = plan_tasks(analyse(ROOT / "configs" / f"{name}.yaml"), Options())
        assert not any("Python steps" in t.reduced for t in tasks), name


def test_a_10000_layer_lstm_verifies() -> None:
    result = verify(analyse(_lstm(10_000)))
    assert result.passed and not result.skipped
    assert {c.path for c in result.checks} == {"(network)", "lstm1"}
    assert all("num_layers 9 (of 10000)" in c.note for c in result.checks if c.path == "lstm1")


@pytest.mark.parametrize("width", [60, 80])
def test_verify_table_fits_the_terminal(cli, write, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """At a 60- or 80-column terminal (COLUMNS, as tests/test_terminal_widths.py's --help test sets
    it) no line of verify's table is wider: every check of lenet5, failures with their notes, a
    folded repeat's rows (path ×N) and the long summary."""
    from rich.cells import cell_len

    monkeypatch.setenv("COLUMNS", str(width))
    huge = write("huge.yaml", "input: [4]\nlayers:\n  - linear: {out_features: 4}\n    repeat: 1000000000\n")
    runs = [
        cli("verify", str(ROOT / "configs" / "lenet5.yaml"), "-f", "table", "--all"),
        cli("verify", str(ROOT / "configs" / "lenet5.yaml"), "-f", "table", "--impl", str(ROOT / "tests" / "impls" / "linear_dx_slightly_off.py")),
        cli("verify", huge, "-f", "table", "--all"),
    ]
    assert [r.status for r in runs] == [0, 1, 0]
    for run in runs:
        lines = run.out.splitlines()
        assert len(lines) > 3 and not [line for line in lines if cell_len(line) > width]
    assert "FAIL" in runs[1].out and " ×999,999,999" in runs[2].out


@pytest.mark.parametrize(
    ("cores", "load", "environ", "expected"),
    [
        (2, 2.3, {}, {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),  # every core taken
        (2, 2.0, {}, {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),  # exactly taken
        (2, 1.2, {}, {}),  # a core free (or the last command's minute still in the average): threads
        (2, 3.0, {"OMP_NUM_THREADS": "2"}, {}),  # the user's thread count wins, whatever the load
        (8, 5.2, {}, {}),
    ],
)
def test_blas_threads_unless_every_core_is_busy(cores: int, load: float, environ: dict[str, str], expected: dict[str, str]) -> None:
    """A BLAS thread on a busy core would wait for it: one thread when the load average reaches the
    core count, BLAS's own count below it."""
    from layercalc.verify.resources import blas_settings

    assert blas_settings(load, cores, environ) == expected
