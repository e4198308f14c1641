"""Hostile input: deep nesting, huge numbers, bad files, internal bugs, interrupts."""

from __future__ import annotations

import os
import time

import pytest

from layercalc import analyse
from layercalc.config import MAX_BLOCK_DEPTH
from layercalc.errors import ConfigError


def nested(kind: str, depth: int) -> str:
    """A config with `depth` blocks of `kind` inside each other around one relu."""
    opener = {"residual": "{residual: {body: [", "sequential": "{sequential: {layers: ["}[kind]
    return "input: [4]\nlayers:\n  - " + opener * depth + "relu" + "]}}" * depth + "\n"


@pytest.mark.parametrize("kind", ["residual", "sequential"])
def test_deep_nesting_within_the_limit_works(kind: str) -> None:
    report = analyse(nested(kind, MAX_BLOCK_DEPTH))
    assert len(list(report.rows())) == MAX_BLOCK_DEPTH + 1


@pytest.mark.parametrize("kind", ["residual", "sequential"])
@pytest.mark.parametrize("depth", [MAX_BLOCK_DEPTH + 1, 10_000])
def test_deeper_nesting_is_a_clear_error(kind: str, depth: int) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="nested|nesting"):
        analyse(nested(kind, depth))
    assert time.perf_counter() - start < 5


def test_huge_repeat_and_sizes_are_exact() -> None:
    # 10**9 copies of linear 10**6 -> 10**6: (10**12 + 10**6) params each
    text = "input: [1000000]\nlayers:\n  - linear: {out_features: 1000000}\n    repeat: 1000000000\n"
    total = analyse(text).total
    assert total["params"] == 10**9 * (10**12 + 10**6)
    assert total["macs"] == 10**9 * 10**12


def test_verify_refuses_what_would_not_fit(cli, write) -> None:
    # a 10^12-parameter linear: checked as a smaller copy of itself, said on its rows
    path = write("big.yaml", "input: [1000000]\nlayers:\n  - linear: {out_features: 1000000}\n    repeat: 3\n")
    run = cli("verify", path, "-f", "tsv")
    assert run.status == 0 and "checked as a smaller copy, out_features " in run.out and "on a reduced input or copy" in run.err
    # nothing fits a 1 KB budget, not even a copy: refused in one line
    run = cli("verify", path, "--max-memory", "1K")
    assert run.status == 2 and run.out == ""
    assert run.err.startswith("error: verify would need about ") and "--batch" in run.err and "--input" in run.err


def test_verify_budget_option(cli, write) -> None:
    path = write("mlp.yaml", "input: [64]\nbatch: 8\nlayers:\n  - linear: {out_features: 64}\n")
    assert cli("verify", path, "--max-memory", "1K").status == 2
    assert cli("verify", path, "--max-memory", "1G").status == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(cli, write) -> None:
    path = write("secret.yaml", "input: [3]\nlayers: [relu]\n")
    os.chmod(path, 0)
    assert cli("params", path).err == f"error: {path}: permission denied\n"


def test_directory_and_empty_stdin(cli, tmp_path) -> None:
    assert cli("params", str(tmp_path)).err == f"error: {tmp_path}: is a directory, not a config file\n"
    assert cli("params", "-", stdin="").err == "error: stdin: empty config\n"


def test_internal_bug_is_one_line_unless_debug(cli, write, monkeypatch) -> None:
    path = write("n.yaml", "input: [3]\nlayers: [relu]\n")

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr("layercalc.api.analyse", broken)
    run = cli("params", path)
    assert run.status == 70 and run.out == ""
    assert run.err == "error: internal error: ZeroDivisionError: simulated bug (run with --debug for the traceback)\n"
    for args in (["--debug", "params", path], ["params", path, "--debug"]):  # --debug anywhere on the line
        run = cli(*args)
        assert run.status == 70 and run.out == "", args  # still an internal error, now with its traceback
        assert "Traceback" in run.err and "ZeroDivisionError: simulated bug" in run.err
        assert run.err.rstrip().splitlines()[-1] == "error: internal error: ZeroDivisionError: simulated bug"


def test_ctrl_c_exits_130_quietly(cli, write, monkeypatch) -> None:
    path = write("n.yaml", "input: [3]\nlayers: [relu]\n")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("layercalc.api.analyse", interrupted)
    run = cli("params", path)
    assert (run.status, run.out) == (130, "")
    assert "Traceback" not in run.err and run.err.count("\n") <= 1


def test_oversized_document_is_rejected(monkeypatch, write) -> None:
    monkeypatch.setattr("layercalc.document.MAX_BYTES", 1000)
    path = write("big.yaml", "input: [3]\nlayers:\n" + "  - relu\n" * 200)
    with pytest.raises(ConfigError, match="larger than"):
        analyse(path)


@pytest.mark.parametrize("option, value, message", [
    ("--max-memory", "inf", "--max-memory: expected a size like 2G (2·10^9 bytes) or 512M, got 'inf'"),
    ("--max-memory", "nan", "--max-memory: expected a size like 2G (2·10^9 bytes) or 512M, got 'nan'"),
    ("--max-memory", "1e400", "--max-memory: expected a size like 2G (2·10^9 bytes) or 512M, got '1e400'"),
    ("--max-memory", "1e300T", "--max-memory: expected a size like 2G (2·10^9 bytes) or 512M, got '1e300T'"),
    ("--max-memory", "0.5", "--max-memory must be at least 1 byte, got '0.5'"),  # no budget at all once in bytes
    ("--seed", "-1", "--seed must be >= 0, got -1"),
    ("--rtol", "-1", "--rtol must be a finite number >= 0, got -1"),
    ("--rtol", "nan", "--rtol must be a finite number >= 0, got nan"),
    ("--atol", "-1e-8", "--atol must be a finite number >= 0, got -1e-08"),
    ("--atol", "inf", "--atol must be a finite number >= 0, got inf"),  # every check would pass
])
def test_verify_bad_option_value_is_one_line_naming_it(cli, write, option: str, value: str, message: str) -> None:
    path = write("n.yaml", "input: [3]\nlayers: [relu]\n")
    run = cli("verify", path, option, value, "-f", "tsv")
    assert (run.status, run.out, run.err) == (2, "", f"error: {message}\n")


def test_verify_option_values_at_their_edges_are_accepted(cli, write) -> None:
    # a zero tolerance is a strict but real request; NumPy seeds any non-negative integer, 2**32 and beyond
    path = write("n.yaml", "input: [3]\nlayers: [relu]\n")
    for args in (["--rtol", "0"], ["--atol", "0"], ["--seed", str(2**32)], ["--seed", str(2**70)], ["--max-memory", "1e30"]):
        run = cli("verify", path, *args, "-f", "tsv")
        assert run.status == 0 and "error" not in run.err, (args, run.err)


def test_sigterm_exits_143_quietly(cli, write, monkeypatch) -> None:
    import signal

    path = write("n.yaml", "input: [3]\nlayers: [relu]\n")

    def terminated(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered here, as from `kill` or a job scheduler
        raise AssertionError("SIGTERM did not stop the command")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("layercalc.api.analyse", terminated)
    run = cli("summary", path)
    assert (run.status, run.out) == (143, "")
    assert "Traceback" not in run.err and run.err.count("\n") <= 1  # as quiet as Ctrl-C
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the command's only
