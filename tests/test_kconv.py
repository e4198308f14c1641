"""kconv: K_conv printed as in the seed's figure (corrected), and checked numerically."""

from __future__ import annotations

import json


def test_seed_figure_3x3_input_2x2_kernel(cli) -> None:
    run = cli("kconv", "--input", "3x3", "--kernel", "2x2", "-f", "tsv")
    rows = [line.split("\t") for line in run.out.splitlines()]
    assert rows[0] == ["", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"]
    # by hand from y_ij = Σ k_pq x_(i+p, j+q): the 4x9 matrix, each row the kernel slid one step
    assert rows[1:] == [
        ["y1", "k1", "k2", "0", "k3", "k4", "0", "0", "0", "0"],
        ["y2", "0", "k1", "k2", "0", "k3", "k4", "0", "0", "0"],
        ["y3", "0", "0", "0", "k1", "k2", "0", "k3", "k4", "0"],
        ["y4", "0", "0", "0", "0", "k1", "k2", "0", "k3", "k4"],
    ]


def test_stride_and_padding(cli) -> None:
    data = json.loads(cli("kconv", "--input", "4x4", "--kernel", "3x3", "--stride", "2", "--padding", "1", "-f", "json").out)
    assert data["shape"] == [4, 16] and data["output"] == [2, 2]
    # y1's window covers rows/cols -1..1: only taps k5 k6 / k8 k9 land on x1 x2 / x5 x6
    assert data["rows"][0] == ["k5", "k6", "0", "0", "k8", "k9"] + ["0"] * 10


def test_check_passes_and_reports(cli) -> None:
    run = cli("kconv", "--input", "5x4", "--kernel", "3x2", "--stride", "2x1", "--dilation", "1x2", "--check", "-f", "json")
    checks = json.loads(run.out)["checks"]
    assert run.status == 0 and len(checks) == 3 and all(c["passed"] and c["error"] <= c["tolerance"] for c in checks)


def test_bad_geometry(cli) -> None:
    assert cli("kconv", "--input", "2x2", "--kernel", "3x3").err == "error: kernel 3x3 exceeds padded input 2x2\n"
    assert cli("kconv", "--input", "0x3").status == 2
