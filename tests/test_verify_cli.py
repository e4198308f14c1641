"""verify at the command line: what --only and --impl accept and refuse, what a passing and a
failing run print, where a failed gradient differs most, the memory units, and a table that fits
60, 80, 120 and 200 columns. Expected messages are pinned; expected verdicts come from the bug
each implementation plants."""

from __future__ import annotations

import csv
import io
import json
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
IMPLS = Path(__file__).resolve().parent / "impls"
RESNET = str(ROOT / "configs" / "resnet18.yaml")
NET = ("input: [6]\nbatch: 3\nlayers:\n  - linear: {out_features: 5}\n    name: fc1\n  - tanh\n"
       "  - linear: {out_features: 4}\n    name: fc2\n")


def rows(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out), delimiter="\t"))


# -- --only ---------------------------------------------------------------------------------------


def test_only_matching_nothing_is_an_error_with_a_did_you_mean(cli) -> None:
    run = cli("verify", RESNET, "--only", "layr1.0")
    assert run.status == 2 and run.out == ""
    assert run.err == ("error: --only layr1.0: no layer or block has that name or path; "
                       "did you mean layer1.0 or layer4.1.0 or layer3.1.0?\n")


def test_only_with_nothing_close_points_to_summary(cli, write) -> None:
    run = cli("verify", write("net.yaml", NET), "--only", "zzzzzz")
    assert run.status == 2 and run.out == ""
    assert run.err == ("error: --only zzzzzz: no layer or block has that name or path; "
                       "`layercalc summary CONFIG` lists every name and path\n")


def test_only_takes_a_path_and_says_how_many_it_selected(cli) -> None:
    run = cli("verify", RESNET, "--only", "layer1.0.0.body.0", "-f", "tsv")
    assert run.status == 0, run.err
    # one layer, as the config's structure says: layer1 (repeat) . copy 0 . residual 0 . body . conv
    assert "verify: --only selects 1 of the 81 layers and blocks\n" in run.err
    assert {r["path"] for r in rows(run.out)} == {"layer1.0.0.body.0"}
    block = cli("verify", RESNET, "--only", "layer2.0.0", "-f", "tsv")  # a block: its 8 inner entries too
    assert "verify: --only selects 8 of the 81 layers and blocks\n" in block.err


# -- --impl ---------------------------------------------------------------------------------------


def test_impl_of_a_type_the_network_does_not_use_is_an_error(cli) -> None:
    run = cli("verify", str(ROOT / "configs" / "lenet5.yaml"), "--impl", str(IMPLS / "plain_tanh.py"))
    assert run.status == 2 and run.out == ""
    assert run.err == ("error: --impl: the network has no tanh layer, so nothing would run your PlainTanh "
                       "(its layer types: conv2d, flatten, linear, maxpool2d, network, relu)\n").replace(", network", "")


def test_a_plain_class_works_with_impl(cli, write) -> None:
    config = write("net.yaml", NET)
    good = cli("verify", config, "--impl", str(IMPLS / "plain_tanh.py"), "-f", "tsv")
    assert good.status == 0, good.err
    assert any(r["path"] == "tanh1" and r["method"].startswith("reference") for r in rows(good.out))
    bad = cli("verify", config, "--impl", str(IMPLS / "plain_tanh_wrong.py"), "-f", "tsv")
    assert bad.status == 1
    failed = [r for r in rows(bad.out) if r["passed"] != "True"]
    assert failed and {r["path"] for r in failed if r["path"] != "(network)"} == {"tanh1"}
    assert any(r["method"].startswith(("direction", "elementwise")) for r in failed)


# -- what a run prints ----------------------------------------------------------------------------


def test_a_passing_run_prints_its_summary_only_and_all_prints_every_check(cli, write) -> None:
    config = write("net.yaml", NET)
    quiet = cli("verify", config, "-f", "table")
    assert quiet.status == 0
    assert quiet.out.splitlines()[0] == "verify net" and " ok " not in quiet.out and "Check" not in quiet.out
    assert " ".join(quiet.out.split()).endswith(", 0 skipped, 0 failed")
    full = cli("verify", config, "-f", "table", "--all")
    checks = len(rows(cli("verify", config, "-f", "tsv").out))
    assert sum(line.startswith("ok ") for line in full.out.splitlines()) == checks
    assert cli("verify", config, "-f", "table", "-v").out == full.out
    assert len(json.loads(cli("verify", config, "-f", "json").out)["results"]) == checks  # machine formats: all


def test_a_failed_check_says_where_the_gradients_differ_most(cli, write) -> None:
    """fc1's input gradient is sign-flipped: at the element where they differ most, numeric = -analytic."""
    config = write("net.yaml", NET)
    run = cli("verify", config, "--impl", str(IMPLS / "wrong_sign.py"), "-f", "json")
    assert run.status == 1
    located = [r for r in json.loads(run.out)["results"] if r["index"] is not None]
    assert located and {r["path"] for r in located} == {"fc1", "fc2"}
    for r in located:
        assert r["check"].startswith("dL/dx") and len(r["index"]) == 2  # (sample, feature) of x
        assert r["numeric"] == pytest.approx(-r["analytic"], rel=1e-6) and abs(r["analytic"]) > 0
        assert f"at x[{r['index'][0]}, {r['index'][1]}]: numeric " in r["note"]
    table = cli("verify", config, "--impl", str(IMPLS / "wrong_sign.py"), "-f", "table")
    assert "largest difference (of all" in table.out and "FAIL fc1 (linear) dL/dx" in table.out


# -- memory units ---------------------------------------------------------------------------------


def test_max_memory_reads_decimal_units_and_messages_use_them(cli, write) -> None:
    from layercalc.cli import parse_bytes

    assert parse_bytes("2G") == parse_bytes("2GB") == 2_000_000_000
    assert parse_bytes("512M") == 512_000_000 and parse_bytes("1.5k") == 1500
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("512MiB") == 512 * 2**20
    layers = "".join("  - linear: {out_features: 256}\n" for _ in range(8))
    run = cli("verify", write("deep.yaml", f"input: [256]\nlayers:\n{layers}"), "--max-memory", "4M", "-f", "tsv")
    assert "above the memory budget of 4.00 MB" in run.err and "MiB" not in run.err and "GiB" not in run.err


# -- the table fits the terminal --------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_the_checks_table_fits_every_width_without_wrapping(width: int) -> None:
    from layercalc import analyse
    from layercalc.render.checks import render_checks
    from layercalc.verify import Options, verify

    result = verify(analyse(ROOT / "configs" / "resnet18.yaml"), Options(batch2=False)).to_dict()
    out = Console(width=width, file=StringIO(), color_system=None)
    render_checks(result, out, every=True)
    lines = out.file.getvalue().splitlines()
    assert max(map(len, lines)) <= width
    body = lines[lines.index(next(line for line in lines if line.startswith("──"))) + 1:]
    table = [line for line in body if line.startswith(("ok ", "FAIL "))]
    assert len(table) == len(result["results"])  # one line a check: no cell wrapped onto a second line
    assert result["summary"] in " ".join(line.strip() for line in lines[-3:])  # prose wraps at spaces
    if width >= 120:  # room for every column and every path in full
        assert "Method" in lines[1] and any("layer4.0.0.shortcut.1" in line for line in table)
    else:  # the Method column goes first, then long paths lose their middle
        assert "Method" not in lines[1]
    if width == 60:  # shortened in the middle: both ends of the path stay ("layer4…ody.0")
        cells = [line.split()[1] for line in table]
        assert any("…" in cell and not cell.endswith("…") for cell in cells)
        assert all(cell.split("…")[0] and "…" not in cell[-1:] for cell in cells if "…" in cell)


def test_a_reduced_check_still_catches_a_wrong_gradient(cli, write) -> None:
    """A 2,000 x 2,000 linear over 64 positions needs about 146 MB (4·10^6 parameters at 18 bytes,
    0.26·10^6 activations at 40, and the run's noise pool of twice the weight at 8), above a
    140 MB budget: it is checked on a shorter input (same arguments), and a sign-flipped dx
    still fails there."""
    config = write("big.yaml", "input: [64, 2000]\nlayers:\n  - linear: {out_features: 2000}\n    name: fc1\n")
    good = cli("verify", config, "--max-memory", "140M", "-f", "tsv")
    assert good.status == 0, good.err
    reduced = [r for r in rows(good.out) if r["path"] == "fc1" and "@ batch 2" not in r["check"]]
    assert reduced and all(r["check"].endswith("(reduced)") for r in reduced)
    assert all(r["note"].startswith("checked at input 1x") and "at its own input 1x64x2000 it needs about" in r["note"]
               for r in reduced)
    bad = cli("verify", config, "--max-memory", "140M", "--impl", str(IMPLS / "wrong_sign.py"), "-f", "tsv")
    assert bad.status == 1
    assert any(r["path"] == "fc1" and r["check"] == "dL/dx (reduced)" and r["passed"] == "False" for r in rows(bad.out))


def test_a_budget_below_the_noise_pool_says_to_raise_it(cli) -> None:
    """At 32x32, resnet18's every check fits 10 MB, but the noise its directions are made from
    (twice its 2.4-million-element layer4 weights) does not: a smaller input would not help, and
    the one line says to raise the budget, by how much."""
    run = cli("verify", str(ROOT / "configs" / "resnet18.yaml"), "--input", "3x32x32", "--max-memory", "10M")
    assert run.status == 2 and run.out == "" and len(run.err.splitlines()) == 1
    assert "of it the noise its random directions are made from" in run.err
    assert "raise it with --max-memory (at least " in run.err and "--input" not in run.err
