"""Hostile input: deep nesting, huge numbers, bad files, internal bugs, interrupts; and a hostile
outside world (closed or full stdout, a reader that leaves, narrow encodings), each run as a real
process under a 4 GB address-space cap and a time limit, where no case may exit 70 or print a traceback."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from layercalc import analyse
from layercalc.config import MAX_BLOCK_DEPTH
from layercalc.errors import ConfigError
from layercalc.render.formats import human, human_bytes


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


# -- the outside world: a real `python -m layercalc` process, capped -----------------------------

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CAP = 4 * 2**30  # bytes of address space a case may map: refusing beats swapping a laptop
TIME_CAP = 60  # seconds a case may take (a loaded 2-core machine; the cases take about one)
MLP = "name: mlp\ninput: [1, 28, 28]\nlayers:\n  - flatten\n  - linear: {out_features: 10}\n    name: fc1\n  - relu\n"
# every command with the arguments it needs: each writes to stdout
COMMANDS = [
    ["summary", "{mlp}", "-f", "table"], ["params", "{mlp}"], ["params", "{mlp}", "--total"],
    ["flops", "{mlp}", "--compare", "-f", "table"], ["shapes", "{mlp}", "-f", "json"],
    ["summary", "{mlp}", "--by-type", "-f", "table"], ["verify", "{mlp}", "-f", "table", "--all"],
    ["kconv", "-f", "table"], ["kconv", "--backward", "--check"], ["layers"], ["layers", "conv2d", "-f", "table"],
    ["--help"], ["--version"],
]


def _capped(close_stdout: bool = False):
    """preexec_fn of a case: the address-space cap (inherited by a shell's children), and `>&-`."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if close_stdout:
            os.close(1)

    return limit


def layercalc(*args: str, stdout: object = subprocess.PIPE, env: dict[str, str] | None = None,
              close_stdout: bool = False, stdin: object = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run `python -m layercalc ARGS` from this checkout, capped; stdout and stderr as bytes."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "layercalc", *args], stdout=stdout, stderr=subprocess.PIPE,
                          stdin=stdin, env=environ, timeout=TIME_CAP, preexec_fn=_capped(close_stdout))


def shell(command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a bash line (where `layercalc` means this checkout's), capped; text out."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    line = command.replace("layercalc ", f"{sys.executable} -m layercalc ")
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=environ, timeout=TIME_CAP,
                          preexec_fn=_capped())


def no_internal_error(run: subprocess.CompletedProcess) -> None:
    """What no outside world may cause: exit 70 or a traceback."""
    err = run.stderr if isinstance(run.stderr, str) else run.stderr.decode("utf-8", "replace")
    assert run.returncode != 70 and "Traceback" not in err and "internal error" not in err, (run.returncode, err)


def _args(command: list[str], mlp: str) -> list[str]:
    return [a.replace("{mlp}", mlp) for a in command]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_full_or_closed_stdout_is_one_line_and_exit_74(write, command: list[str]) -> None:
    args = _args(command, write("mlp.yaml", MLP))
    with open("/dev/full", "w") as full:
        run = layercalc(*args, stdout=full)
    no_internal_error(run)
    assert (run.returncode, run.stderr) == (74, b"error: cannot write to stdout: no space left on device\n")
    run = layercalc(*args, close_stdout=True)
    no_internal_error(run)
    assert (run.returncode, run.stderr) == (74, b"error: cannot write to stdout: it is closed\n")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_reader_that_reads_nothing_is_not_a_failure(write, command: list[str]) -> None:
    # `| true` closes the pipe before the first write: 0, as other tools that stop quietly do
    args = " ".join(_args(command, write("mlp.yaml", MLP)))
    run = shell(f"layercalc {args} | true; echo $" + "{PIPESTATUS[0]}")
    assert (run.stdout, run.stderr) == ("0\n", "")


def test_closed_stderr_and_stdin(write) -> None:
    path = write("mlp.yaml", MLP)
    # messages to a closed stderr are lost, never written to stdout instead
    run = shell(f"layercalc params missing.yaml 2>&-")
    assert (run.returncode, run.stdout) == (2, "")
    run = shell(f"layercalc verify {path} -f tsv 2>&-")
    assert run.returncode == 0 and run.stdout.startswith("path\t")
    # a closed stdin is an empty one
    run = shell("layercalc params - <&-")
    assert (run.returncode, run.stdout, run.stderr) == (2, "", "error: stdin: empty config\n")


NARROW = {
    "ascii": {"PYTHONIOENCODING": "ascii"},
    "posix-locale": {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},
    "latin-1": {"PYTHONIOENCODING": "latin-1"},
}
ODD_NAMES = "name: réseau·网络\ninput: [4]\nlayers:\n  - linear: {out_features: 2}\n    name: café\n  - relu\n"


@pytest.mark.parametrize("encoding", NARROW)
@pytest.mark.parametrize("command", COMMANDS + [["kconv", "--transposed", "--stride", "2"], ["summary", "{odd}", "-f", "table"],
                                                ["summary", "{odd}", "-f", "tsv"], ["summary", "{odd}", "--by-type", "-f", "table"]],
                         ids=" ".join)
def test_a_narrow_encoding_gets_ascii_stand_ins(write, encoding: str, command: list[str]) -> None:
    args = [a.replace("{odd}", write("odd.yaml", ODD_NAMES)) for a in _args(command, write("mlp.yaml", MLP))]
    run = layercalc(*args, env=NARROW[encoding])
    no_internal_error(run)
    assert run.returncode == 0 and run.stderr == b""
    text = run.stdout.decode("latin-1" if encoding == "latin-1" else "ascii")  # fails on a byte it cannot hold
    assert "─" not in text and "×" not in text
    if "odd.yaml" in " ".join(args):  # a name's own characters the encoding lacks: backslash escapes
        cafe = "caf\\xe9" if encoding != "latin-1" else "café"  # the layer's name (not in --by-type)
        assert "\\u7f51" in text or cafe in text, text  # the network's (not in tsv)


# sizes near 10^300: a linear 10^160 -> 10^160 has 10^320 weights, past the largest float (1.8e308)
HUGE = f"name: huge\ninput: [1{'0' * 160}]\nlayers:\n  - linear: {{out_features: 1{'0' * 160}}}\n    name: fc\n"


@pytest.mark.parametrize("view", [[], ["--compare"], ["--training"], ["--by-type"]], ids=" ".join)
@pytest.mark.parametrize("command", ["summary", "params", "flops", "shapes"])
def test_huge_sizes_in_every_view_are_exact(cli, write, monkeypatch, command: str, view: list[str]) -> None:
    if (view and command == "shapes") or (view in (["--compare"], ["--training"]) and command == "params") \
            or (view == ["--compare"] and command == "summary"):
        pytest.skip("not an option of this command")
    path = write("huge.yaml", HUGE)
    weights = 10**320  # in_features · out_features; with the bias 10^320 + 10^160 params
    expected = f"{weights:,}" if command == "flops" else f"{weights + 10**160:,}"
    run = cli(command, path, *view, "-f", "table")  # 80 columns: the footer's integers fold, never shorten
    assert run.status == 0 and run.err == "", run.err
    assert not any(line.rstrip().endswith("…") for line in run.out.splitlines()[2:]), run.out
    monkeypatch.setenv("COLUMNS", "2000")
    run = cli(command, path, *view, "-f", "table")
    assert run.status == 0 and (command == "shapes" or expected in run.out), run.out
    if view == ["--compare"]:
        return
    for fmt in ("json", "tsv"):  # exact integers, never floats
        out = cli(command, path, *view, "-f", fmt).out
        assert "e+" not in out and "inf" not in out.lower()
        assert command == "shapes" or expected.replace(",", "") in out


def test_human_units_of_huge_counts_are_exact() -> None:
    assert human(10**320) == "1.00e320"
    assert human(15 * 10**21 - 1) == "1.50e22"  # 10,000 E and past: the exponent, not 15000 E
    assert human(999 * 10**18) == "999 E"
    # three significant digits: 9,999 E rounds to 10,000 E, which is past the prefixes (as 9,999 reads 10.0 K)
    assert human(9_999 * 10**18) == "1.00e22"
    assert human_bytes(4 * 10**320) == "4.00e320 B"
    assert human_bytes(-0 + 10**18) == "1.00 EB"


# -- kconv: bounded by what a reader can use ------------------------------------------------------

LIMIT = "kconv shows at most 1,048,576 (the 1,024 x 1,024 K_conv of a 32x32 input)"


@pytest.mark.parametrize(("args", "message"), [
    # 98 x 98 outputs by 100 x 100 inputs: 9,604 x 10,000 (once 780 MB to print a note)
    (["--input", "100x100", "--kernel", "3x3", "-f", "table"], f"K_conv would be 9,604 x 10,000 (96,040,000 entries); {LIMIT}"),
    (["--input", "20000", "--kernel", "3", "-f", "tsv"], "K_conv would be 19,998 x 20,000 (399,960,000 entries)"),  # 3 GB
    (["--input", "100000", "--kernel", "3"], "K_conv would be 99,998 x 100,000"),  # MemoryError
    (["--input", "2000x2000", "-f", "json"], "K_conv would be 3,996,001 x 4,000,000"),
    (["--input", "99999999999999999999"], "--kernel must be an integer >= 1 for a 1-D input, got '2x2'"),
    (["--input", "99999999999999999999", "--kernel", "3"], "K_conv would be 99,999,999,999,999,999,997 x 99,999,999,999,999,999,999"),
    (["--input", "3", "--kernel", "1", "--stride", "100000000000", "--transposed"],
     "K_convᵀ would be 200,000,000,001 x 3"),  # a transposed conv's 2·10^11 outputs
    # 1 input, padding 5·10^8 each side, a 2-tap kernel dilated 10^9: one output, but a 10^9-cell grid
    (["--input", "1", "--kernel", "2", "--dilation", "1000000000", "--padding", "500000000", "--backward"],
     f"the padded, dilated grid 2000000001 has 2,000,000,001 cells; {LIMIT}"),
    # 1 input, padding 1,500, a 2,000-tap kernel: 1,002 positions x 2,000 taps to walk
    (["--input", "1", "--kernel", "2000", "--padding", "1500", "--backward"],
     f"the kernel's 2,000 taps at 1,002 positions are 2,004,000 window steps; {LIMIT}"),
    # --draw of a 5,000-cell input (once 32 s, then MemoryError): its K_conv is past the limit already
    (["--input", "5000", "--kernel", "3", "--draw", "-", "--frames"], "K_conv would be 4,998 x 5,000"),
    # 998 frames, each redrawing the 1,000 inputs, 998 outputs, 3 taps and the output cell
    (["--input", "1000", "--kernel", "3", "--draw", "-", "--frames"], "--draw: a --frames strip of this convolution has"
     " 1,997,996 cells; kconv draws at most 131,072 (about 13 MB of SVG): try a smaller --input, or no --frames"),
    # animated: the padded input (1 + 2·100)^2 = 40,401 cells and the 2x2 outputs once, then each of
    # the 4 frames' 200x200 = 40,000 taps and its output cell: 40,401 + 4 + 4 · 40,001
    (["--input", "1x1", "--kernel", "200x200", "--padding", "100", "--draw", "-"],
     "--draw: an animation of this convolution has 200,409 cells; kconv draws at most 131,072"),
])
def test_kconv_refuses_past_its_limits_in_one_line(args: list[str], message: str) -> None:
    run = layercalc("kconv", *args)
    no_internal_error(run)
    err = run.stderr.decode()
    assert (run.returncode, run.stdout) == (2, b"") and err.count("\n") == 1, err
    assert err.startswith(f"error: {message}"), err


@pytest.mark.parametrize("args", [
    ["--input", "32x32", "--kernel", "3x3", "--padding", "1", "-f", "tsv"],  # 1,024 x 1,024: the largest K_conv
    ["--input", "1x1", "--kernel", "1", "--padding", "511", "-f", "table"],  # 1,046,529 x 1: the note only
    ["--input", "1024", "--kernel", "3", "--backward", "-f", "json"],
    ["--input", "1", "--kernel", "1000", "--padding", "500", "--backward", "--check"],  # 2 positions, 1,000 taps
    ["--input", "30x30", "--kernel", "3x3", "--draw", "-"],  # 784 frames animated
    ["--input", "9x9", "--kernel", "3x3", "--draw", "-", "--frames"],  # a strip of 49
])
def test_kconv_within_its_limits_runs_under_the_cap(args: list[str]) -> None:
    run = layercalc("kconv", *args)
    no_internal_error(run)
    assert run.returncode == 0 and run.stdout


def test_a_kconv_table_too_large_to_show_is_not_built() -> None:
    from layercalc import kconv as kc

    data = kc.kconv(kc.geometry("1x1", "1", padding="511"), rows_up_to=100)
    assert data["shape"] == [1023 * 1023, 1] and "rows" not in data
    assert len(kc.kconv(kc.geometry("3x3", "2x2"), rows_up_to=100)["rows"]) == 4


# -- config files: JSON read as JSON, a tie to a block named as one -------------------------------


def test_json_with_a_surrogate_pair_is_read_as_json(cli, write) -> None:
    # valid JSON (RFC 8259 §7): U+1F600 written as its UTF-16 pair; YAML refused it as invalid YAML
    path = write("net.json", '{"name": "\\ud83d\\ude00 net", "input": [3],\n "layers": ["relu"]}\n')
    run = cli("summary", path, "-f", "json")
    assert run.status == 0 and json.loads(run.out)["name"] == "\U0001F600 net"
    # half a pair is no character: one line naming it, with its line
    path = write("half.json", '{"input": [3],\n "name": "\\ud800",\n "layers": ["relu"]}\n')
    assert cli("summary", path).err == (f"error: {path}:2: invalid JSON: \\ud800 is half of a UTF-16 surrogate"
                                        " pair, not a character\n")
    # JSON syntax errors say JSON, with the line
    path = write("bad.json", '{"input": [3],\n "layers": [relu]}\n')
    assert cli("summary", path).err == f"error: {path}:2: invalid JSON: expected a value, found 'r'\n"
    # YAML's flow style, which is not JSON, stays YAML
    path = write("flow.yaml", "{input: [3], layers: [relu]}\n")
    assert cli("params", path, "--total").out == "0\n"


def test_tied_to_a_block_says_it_is_a_block(cli, write) -> None:
    text = ("input: [8]\nlayers:\n  - sequential:\n      layers:\n        - linear: {out_features: 8}\n"
            "          name: inner\n    name: enc\n  - linear: {out_features: 8, tied_to: enc}\n")
    run = cli("summary", write("tie.yaml", text))
    assert run.status == 2 and run.out == ""
    assert run.err.endswith("layers[1] (linear 'linear1'): weight tied to 'enc', but sequential 'enc' is a block,"
                            " not a layer: tie to the layer inside it that owns the weight\n"), run.err
    # tied to the layer inside it: inner's 8·8 weight and 8 biases, and the tying layer's own 8 biases
    assert cli("params", write("ok.yaml", text.replace("tied_to: enc", "tied_to: inner")), "--total").out == "80\n"


@pytest.mark.parametrize("columns", ["0", "1", "3", "-5", "abc", "100000"])
def test_any_terminal_width_is_drawn_without_an_internal_error(cli, write, monkeypatch, columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    path = write("mlp.yaml", MLP)
    for command in (["summary", path], ["summary", path, "--by-type"], ["flops", path, "--compare"], ["kconv"],
                    ["kconv", "--backward", "--check"], ["kconv", "--transposed"], ["layers"], ["layers", "conv2d"]):
        run = cli(*command, "-f", "table")
        assert run.status == 0 and run.out, (columns, command, run.err)
