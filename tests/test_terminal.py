"""What a person sees around the numbers: units, pipes that close early, rows with content."""

from __future__ import annotations

import subprocess
import sys

import pytest

from layercalc.render.formats import human, human_bytes


@pytest.mark.parametrize(
    "n, text",
    [
        (362_815 * 10**12, "363 P"),  # once printed as '362815 T'
        (10**18, "1.00 E"),
        (2_500 * 10**18, "2500 E"),  # past the last prefix the number grows
        (1_814_073_856, "1.81 G"),
        (999, "999"),
        # a carry at a digit or unit boundary keeps three significant digits (9,999 read '10.00 K',
        # 999,999 '1000 K')
        (9_994, "9.99 K"),
        (9_995, "10.0 K"),
        (9_999, "10.0 K"),
        (99_949, "99.9 K"),
        (99_950, "100 K"),
        (999_499, "999 K"),
        (999_500, "1.00 M"),
        (999_999_999, "1.00 G"),
        (10_000, "10.0 K"),
        (1_000, "1.00 K"),
    ],
)
def test_units_go_up_to_exa(n: int, text: str) -> None:
    assert human(n) == text


def test_bytes_are_decimal_throughout() -> None:
    # MB = 10^6 bytes, GB = 10^9, as torchinfo prints them
    assert human_bytes(46_758_048) == "46.76 MB"
    assert human_bytes(3 * 10**15) == "3.00 PB"
    assert human_bytes(512) == "512 B"


@pytest.mark.parametrize("fmt", ["table", "tsv", "csv", "json", "markdown"])
def test_a_reader_that_stops_early_is_not_a_failure(tmp_path, fmt: str) -> None:
    # 4,000 distinct rows: far more than a pipe buffer holds, so the writer meets a closed pipe
    layers = "".join(f"  - {'relu' if i % 2 else 'tanh'}\n" for i in range(4000))
    config = tmp_path / "long.yaml"
    config.write_text(f"input: [8]\nlayers:\n{layers}")
    cmd = f"{sys.executable} -m layercalc summary {config} -f {fmt} | head -c 10 >/dev/null; echo $" + "{PIPESTATUS[0]}"
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    assert (run.stdout, run.stderr) == ("0\n", "")


def test_machine_formats_have_no_empty_rows(cli) -> None:
    for command in ("shapes", "params", "flops", "summary"):
        out = cli(command, "-l", "linear:out_features=2", "--input", "3", "-f", "tsv").out
        lines = out.splitlines()
        assert all(line.strip("\t") for line in lines), (command, out)
    # shapes has nothing to total: header and one row
    assert len(cli("shapes", "-l", "relu", "--input", "3", "-f", "tsv").out.splitlines()) == 2


def _help_options(cli, command: str) -> set[str]:
    out = cli(command, "--help").out
    return {word for line in out.splitlines() for word in line.replace("│", " ").split() if word.startswith("--")}


@pytest.mark.parametrize(
    "command, has, lacks",
    [
        ("summary", {"--convention", "--training", "--optimizer"}, {"--total", "--macs", "--compare"}),
        ("params", {"--total"}, {"--macs", "--convention", "--compare", "--training", "--optimizer"}),
        ("flops", {"--total", "--macs", "--convention", "--compare", "--training", "--optimizer"}, set()),
        ("shapes", {"--depth"}, {"--total", "--macs", "--convention", "--compare", "--training", "--optimizer"}),
    ],
)
def test_each_command_lists_only_its_own_options(cli, command: str, has: set[str], lacks: set[str]) -> None:
    listed = _help_options(cli, command)
    assert has <= listed and not lacks & listed
    for option in lacks:  # and refuses what it does not list
        run = cli(command, "-l", "relu", "--input", "3", option)
        assert run.status == 2 and run.err.startswith(f"error: No such option: {option}"), option


@pytest.mark.parametrize(
    "args, conflict",
    [
        (["flops", "--macs"], "--macs goes with --total"),
        (["params", "--total", "--macs"], "No such option: --macs"),
        (["summary", "--optimizer", "sgd"], "--optimizer goes with --training"),
        (["flops", "--compare", "--convention", "thop"], "--compare shows every convention's forward pass; it does not combine with --convention"),
        (["flops", "--compare", "--training"], "--compare shows every convention's forward pass; it does not combine with --training"),
        (["flops", "--compare", "--total"], "--compare shows every convention's forward pass; it does not combine with --total"),
        (["summary", "--training", "--convention", "thop"], "--training counts the backward pass as autograd runs it; thop counts only the forward pass"),
        (["flops", "--total", "-f", "json"], "--total prints a bare integer; it does not combine with --format"),
    ],
)
def test_conflicting_options_are_refused(cli, args: list[str], conflict: str) -> None:
    run = cli(*args, "-l", "linear:out_features=2", "--input", "3")
    assert run.status == 2 and run.out == ""
    assert run.err.startswith(f"error: {conflict}") and run.err.count("\n") == 1


def test_training_under_torch_is_flopcountermode_forward_and_backward(cli) -> None:
    # linear 3 -> 2 at batch 1: forward 6 MACs; backward dW 6 (no dx for the first layer); FLOPs 2·12
    assert cli("flops", "-l", "linear:out_features=2,bias=false", "--input", "3", "--training", "--convention", "torch", "--total").out == "24\n"


@pytest.mark.parametrize("command", ["summary", "params", "flops", "shapes", "verify", "kconv", "layers"])
def test_help_reads_cleanly_at_80_columns(command: str) -> None:
    env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin", "TERM": "dumb"}
    run = subprocess.run([sys.executable, "-m", "layercalc", command, "--help"], capture_output=True, text=True, env=env)
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    # no metavar or option name broken across lines: every <...> closes on its own line
    assert all(line.count("<") == line.count(">") for line in lines), run.stdout


def test_shorten_middle_keeps_both_ends_within_the_width() -> None:
    from layercalc.render.formats import shorten_middle

    assert shorten_middle("layer4.1.body.conv2", 19) == "layer4.1.body.conv2"
    assert shorten_middle("layer4.1.body.conv2", 11) == "layer…conv2"  # 5 + 1 + 5 characters
    assert shorten_middle("layer4.1.body.conv2", 12) == "layer4…conv2"
    assert all(len(shorten_middle("layer4.1.body.conv2", w)) == min(w, 19) for w in range(1, 25))


# -- names that reach a terminal ------------------------------------------------------------------

HOSTILE_NAMES = [
    "\x1b[31mred\x1b[0m", "\x1b]0;retitled\x07", "two\nlines", "tab\there", "nul\x00", "cr\rback", "csi\x9b2J",
    "bidi\u202eevil", "bell\x07", "[bold]markup[/]",
]


def _hostile_config(write) -> str:
    import json

    doc = {"name": "net\x1b]0;title\x07", "input": [4],
           "layers": [{"linear": {"out_features": 4}, "name": n} for n in HOSTILE_NAMES]}
    return write("hostile.json", json.dumps(doc))


def _raw_controls(text: str) -> set[str]:
    """Characters a terminal acts on, other than the newlines that end rows and the tabs of tsv."""
    return {ch for line in text.split("\n") for ch in line.replace("\t", "") if not ch.isprintable()}


@pytest.mark.parametrize("fmt", ["table", "tsv", "csv", "markdown"])
@pytest.mark.parametrize("view", [[], ["--by-type"], ["--training"]], ids=" ".join)
def test_names_are_escaped_in_every_text_format(cli, write, fmt: str, view: list[str]) -> None:
    run = cli("summary", _hostile_config(write), *view, "-f", fmt)
    assert run.status == 0 and _raw_controls(run.out) == set(), _raw_controls(run.out)
    if view == ["--by-type"]:
        return
    # escaped as the error messages escape them: ESC as \x1b, the newline as \n, the bidi override as \u202e
    for escaped in ("\\x1b[31mred\\x1b[0m", "\\x1b]0;retitled\\x07", "two\\nlines", "tab\\there", "bidi\\u202eevil"):
        # markdown doubles the backslash, so that the page shows \x1b
        assert (escaped.replace("\\", "\\\\") if fmt == "markdown" else escaped) in run.out
    if fmt == "tsv":  # one row a line, as many fields in each: `cut` and `wc -l` still work
        lines = run.out.splitlines()
        assert len(lines) == 1 + len(HOSTILE_NAMES) + 1  # header, a row a layer, the total
        assert len({line.count("\t") for line in lines}) == 1


def test_markup_in_a_name_is_shown_as_written(cli, write) -> None:
    path = write("m.yaml", "name: '[red]net[/red]'\ninput: [4]\nlayers:\n  - relu\n")
    for view in ([], ["--by-type"]):
        assert cli("summary", path, *view, "-f", "table").out.startswith("[red]net[/red]"), view


def test_a_file_stem_used_as_the_name_is_escaped(cli, write) -> None:
    path = write("evil\x1b]0;x\x07.yaml", "input: [4]\nlayers:\n  - relu\n")
    out = cli("summary", path, "-f", "table").out
    assert out.startswith("evil\\x1b]0;x\\x07  input 4") and _raw_controls(out) == set()


def test_wide_characters_take_two_columns(cli, write, monkeypatch) -> None:
    from rich.cells import cell_len  # Rich's own measure of terminal columns, independent of layercalc's

    names = ["网络层", "conv_短", "ａｂｃ", "plain"]  # CJK and fullwidth letters: two columns each
    layers = "".join(f"  - linear: {{out_features: 4}}\n    name: {n}\n" for n in names)
    path = write("wide.yaml", f"input: [4]\nlayers:\n{layers}")
    for columns in ("80", "30"):
        monkeypatch.setenv("COLUMNS", columns)
        lines = cli("summary", path, "-f", "table").out.splitlines()
        rows = [line for line in lines if " linear " in line]
        assert len(rows) == len(names)
        # every row's numbers end in the same terminal column, and no line passes the width
        ends = {cell_len(line.rstrip()) for line in rows}
        assert len(ends) == 1, (columns, rows)
        assert max(cell_len(line) for line in lines) <= int(columns)


def test_verify_shows_names_escaped(cli, write) -> None:
    run = cli("verify", _hostile_config(write), "-f", "table", "--all")
    assert run.status == 0 and _raw_controls(run.out) == set(), run.err
    assert "\\x1b]0;retitled\\x07" in run.out and run.out.startswith("verify net\\x1b]0;title\\x07")
