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
