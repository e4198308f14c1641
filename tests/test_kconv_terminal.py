"""kconv at the terminal: every entry of K_conv visible at 60, 80, 120 and 200 columns, and big matrices.

The printed column blocks are parsed back into a matrix and compared with K_conv computed here
independently: the convolution (written out with NumPy slices, padding and dilation by hand)
applied to every unit input vector gives one column of K_conv each. The kernel's taps are
numbered 1, 2, 3, ... so a printed name k_t stands for the number t + 1 - base.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from rich.cells import cell_len

WIDTHS = (60, 80, 120, 200)

# (options, rank, transposed): the README's and the lecture's examples, and the largest table
CLASSROOM = [
    (("--input", "3x3", "--kernel", "2x2"), 2, False),
    (("--input", "4x4", "--kernel", "3x3", "--stride", "2", "--padding", "1"), 2, False),
    (("--input", "5x5", "--kernel", "3x3", "--padding", "1"), 2, False),
    (("--input", "7x7", "--kernel", "3", "--dilation", "2"), 2, False),
    (("--input", "6x5", "--kernel", "3x2", "--stride", "2x1", "--padding", "1x0"), 2, False),
    (("--input", "10x10", "--kernel", "3x3", "--padding", "1"), 2, False),  # 100 x 100: the largest table
    (("--input", "5", "--kernel", "3"), 1, False),
    (("--input", "6", "--kernel", "3", "--stride", "2", "--padding", "1"), 1, False),
    (("--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed"), 1, True),
    (("--input", "3x3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed"), 2, True),
]


def option(args: tuple[str, ...], name: str, default: str) -> tuple[int, ...]:
    """A size option as a 2-D pair (1-D: height 1 for sizes, 1 or 0 for the rest)."""
    text = args[args.index(name) + 1] if name in args else default
    values = tuple(int(v) for v in text.split("x"))
    return values * 2 if len(values) == 1 else values


def conv_by_hand(x: np.ndarray, k: np.ndarray, stride: tuple[int, int], pad: tuple[int, int], dil: tuple[int, int]) -> np.ndarray:
    """y[b, i, j] = Σ_pq k[p, q]·xpad[b, i·s + p·d, j·s + q·d] for a batch x (B, H, W): the definition, with slices."""
    b, h, w = x.shape
    xp = np.zeros((b, h + 2 * pad[0], w + 2 * pad[1]))
    xp[:, pad[0] : pad[0] + h, pad[1] : pad[1] + w] = x
    kh, kw = k.shape
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((b, ho, wo))
    for p in range(kh):
        for q in range(kw):
            r0, c0 = p * dil[0], q * dil[1]
            y += k[p, q] * xp[:, r0 : r0 + (ho - 1) * stride[0] + 1 : stride[0], c0 : c0 + (wo - 1) * stride[1] + 1 : stride[1]]
    return y


def expected_matrix(args: tuple[str, ...], rank: int, transposed: bool) -> np.ndarray:
    """K_conv (or K_convᵀ) with taps numbered 1.. in reading order, from the conv of every unit vector."""
    kernel = option(args, "--kernel", "1")
    stride, pad, dil = option(args, "--stride", "1"), option(args, "--padding", "0"), option(args, "--dilation", "1")
    size = option(args, "--input", "1")
    if rank == 1:
        kernel, stride, pad, dil, size = (1, kernel[1]), (1, stride[1]), (0, pad[1]), (1, dil[1]), (1, size[1])
    k = np.arange(1, kernel[0] * kernel[1] + 1, dtype=float).reshape(kernel)
    if transposed:
        # the transposed conv's input is the conv's output: find the conv input of that output size
        size = tuple((n - 1) * s - 2 * p + d * (kk - 1) + 1 for n, s, p, d, kk in zip(size, stride, pad, dil, kernel))
    n = size[0] * size[1]
    units = np.eye(n).reshape(n, *size)
    columns = conv_by_hand(units, k, stride, pad, dil).reshape(n, -1)  # row j: the conv of unit vector j
    m = columns.T  # (outputs, inputs)
    return m.T if transposed else m


def parse_blocks(text: str) -> tuple[dict[tuple[str, str], str], list[str]]:
    """{(row name, column name): entry} of every printed matrix block, and the column names in order."""
    entries: dict[tuple[str, str], str] = {}
    order: list[str] = []
    heads: list[str] | None = None
    for line in text.splitlines():
        words = line.split()
        if words and all(re.fullmatch(r"x\d+", w) for w in words):
            heads = words
            order += words
        elif heads is not None and words and re.fullmatch(r"y\d+", words[0]):
            assert len(words) == len(heads) + 1, line
            for head, value in zip(heads, words[1:]):
                assert (words[0], head) not in entries, (words[0], head)
                entries[(words[0], head)] = value
        elif not words or set(line.strip()) == {"─"}:
            continue
        else:
            heads = None  # a block title, a headline, the terms: not matrix rows
    return entries, order


def as_numbers(entries: dict[tuple[str, str], str], shape: tuple[int, int], base: int) -> np.ndarray:
    """The parsed entries as numbers (k_t -> t + 1 - base, 0 -> 0); every (row, column) must be present."""
    m = np.full(shape, np.nan)
    for (row, col), value in entries.items():
        m[int(row[1:]) - base, int(col[1:]) - base] = 0 if value == "0" else int(value[1:]) + 1 - base
    return m


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("args", "rank", "transposed"), CLASSROOM, ids=[" ".join(c[0]) for c in CLASSROOM])
def test_every_entry_visible_and_no_line_too_long(cli, monkeypatch: pytest.MonkeyPatch, width: int, args: tuple[str, ...], rank: int, transposed: bool) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    run = cli("kconv", *args, "-f", "table")
    assert run.status == 0 and run.err == ""
    expected = expected_matrix(args, rank, transposed)
    base = 0 if rank == 1 else 1
    entries, order = parse_blocks(run.out)
    assert len(entries) == expected.size  # nothing dropped, nothing twice
    np.testing.assert_array_equal(as_numbers(entries, expected.shape, base), expected)
    assert order == [f"x{j + base}" for j in range(expected.shape[1])]  # blocks in column order
    assert "…" not in run.out
    too_long = [line for line in run.out.splitlines() if cell_len(line) > width]
    assert not too_long, too_long


@pytest.mark.parametrize("width", WIDTHS)
def test_blocks_are_as_wide_as_the_terminal_allows(cli, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    # 5x5 input, padding 1: 25 columns named x1..x25, entries k1..k9; every column 3 characters
    # wide plus a 3-space gap, after " y25" (4 characters): (width − 4) // 6 columns per block
    monkeypatch.setenv("COLUMNS", str(width))
    out = cli("kconv", "--input", "5x5", "--kernel", "3x3", "--padding", "1", "-f", "table").out
    per = (width - 4) // 6
    blocks = -(-25 // per)
    titles = [line for line in out.splitlines() if line.startswith("Column")]
    if blocks == 1:
        assert titles == []
    else:
        starts = range(1, 26, per)
        assert titles == [f"Columns x{s} through x{min(25, s + per - 1)}" if min(25, s + per - 1) > s else f"Column x{s}" for s in starts]


def test_a_one_column_block_is_named_alone(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # 25 columns, 12 per block at 80 columns ((80 − 4) // 6): x1–x12, x13–x24, then x25 alone
    monkeypatch.setenv("COLUMNS", "80")
    out = cli("kconv", "--input", "5x5", "--kernel", "3x3", "--padding", "1", "-f", "table").out
    assert [line for line in out.splitlines() if line.startswith("Column")] == [
        "Columns x1 through x12", "Columns x13 through x24", "Column x25"]


@pytest.mark.parametrize(("args", "shape"), [
    (("--input", "11x11", "--kernel", "3x3", "--padding", "1"), "121 x 121"),  # one past the 100-row limit
    (("--input", "32x32", "--kernel", "3x3"), "900 x 1024"),
    (("--input", "200", "--kernel", "3"), "198 x 200"),
])
def test_too_large_for_a_table_says_so(cli, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], shape: str) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run = cli("kconv", *args, "-f", "table")
    h, w = (int(v) for v in shape.split(" x "))
    assert run.status == 0
    assert run.err == (f"note: K_conv {shape} ({h * w:,} entries) is too large to read as a table (at most 100 rows"
                       " and columns); -f tsv, csv or json give every entry\n")
    # the title and the geometry still print; no matrix row does
    assert run.out.startswith(f"K_conv {shape}: vec(y) = K_conv · vec(x)\n")
    assert parse_blocks(run.out)[0] == {}


def test_too_large_still_runs_the_checks(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run = cli("kconv", "--input", "12x12", "--kernel", "3x3", "--check", "-f", "table")
    assert run.status == 0 and run.err.startswith("note: K_conv 100 x 144")
    # the printed K_conv, forward, backward, full correlation: all checked though the matrix is not shown
    assert sum(line.startswith("ok ") for line in run.out.splitlines()) == 4


@pytest.mark.parametrize("fmt", ["tsv", "csv", "json"])
def test_machine_formats_of_a_1024_square_kconv(cli, fmt: str) -> None:
    # 32x32 input, 3x3 kernel, padding 1: 1,024 outputs by 1,024 inputs, every entry against the unit-vector K_conv
    args = ("--input", "32x32", "--kernel", "3x3", "--padding", "1")
    run = cli("kconv", *args, "-f", fmt)
    assert run.status == 0 and run.err == ""
    if fmt == "json":
        rows: list[list[str]] = json.loads(run.out)["rows"]
    else:
        lines = [line.split("\t" if fmt == "tsv" else ",") for line in run.out.splitlines()]
        assert lines[0] == ["", *(f"x{j}" for j in range(1, 1025))]
        assert [line[0] for line in lines[1:]] == [f"y{i}" for i in range(1, 1025)]
        rows = [line[1:] for line in lines[1:]]
    got = np.array([[0 if v == "0" else int(v[1:]) for v in row] for row in rows], dtype=float)
    np.testing.assert_array_equal(got, expected_matrix(args, 2, False))


def test_json_is_the_same_document_with_one_row_per_line(cli) -> None:
    run = cli("kconv", "--input", "3x3", "--kernel", "2x2", "--backward", "--check", "-f", "json")
    data: dict[str, Any] = json.loads(run.out)
    # by hand (the seed's figure): the first row of K_conv is k1 k2 0 k3 k4 0 0 0 0
    assert data["rows"][0] == ["k1", "k2", "0", "k3", "k4", "0", "0", "0", "0"]
    assert '    ["k1", "k2", "0", "k3", "k4", "0", "0", "0", "0"],' in run.out.splitlines()
    assert {"symbolic", "checks", "shape", "matrix"} <= set(data)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("args", [
    ("--input", "3x3", "--kernel", "2x2", "--backward", "--check"),
    ("--input", "5", "--kernel", "3", "--backward", "--check"),
    ("--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed", "--check"),
])
def test_prose_terms_and_checks_fit_the_width(cli, monkeypatch: pytest.MonkeyPatch, width: int, args: tuple[str, ...]) -> None:
    # the laid-out grids are drawings and keep their shape; every other line fits
    monkeypatch.setenv("COLUMNS", str(width))
    out = cli("kconv", *args, "-f", "table").out
    def drawing(line: str) -> bool:
        # a grid row, or a row of the sliding layout: only names of cells, zeros and spaces
        return bool(re.match(r"^\s*(\[|∇y laid out:|x laid out:|flipped kernel:)", line)
                    or ("=" not in line and re.fullmatch(r"[\s0-9kxy∂L/\[\],]*", line)))
    too_long = [line for line in out.splitlines() if cell_len(line) > width and not drawing(line)]
    assert not too_long, too_long
    # wrapping loses no term: the sums read back whole
    joined = " ".join(out.split())
    if "--backward" in args and "3x3" in args:
        assert "∂L/∂x[1,1] = k[0,0]·∂L/∂y[1,1] + k[0,1]·∂L/∂y[1,0] + k[1,0]·∂L/∂y[0,1] + k[1,1]·∂L/∂y[0,0]" in joined
    assert all(f"ok {what}" in joined for what in ("vec(", "∇x = "))


# ---------------------------------------------------------------------------------------------
# the drawing: one frame visible at a time, and a document that grows linearly with the frames
# ---------------------------------------------------------------------------------------------


def visible_at(animate: Any, t: float) -> str:
    """The value of a discrete SMIL animation at fraction t of its loop: the last value whose keyTime <= t."""
    values = animate.get("values").split(";")
    times = [float(v) for v in animate.get("keyTimes").split(";")]
    assert times[0] == 0 and times == sorted(times) and len(times) == len(values)
    return [v for v, start in zip(values, times) if start <= t][-1]


@pytest.mark.parametrize("n", [2, 3, 9])
def test_svg_shows_frame_j_alone_during_the_jth_step(cli, tmp_path: Any, n: int) -> None:
    import xml.etree.ElementTree as ET

    path = tmp_path / "a.svg"
    # a 1-D input of n + 1 and a kernel of 2: n outputs, one frame each
    assert cli("kconv", "--input", str(n + 1), "--kernel", "2", "--draw", str(path)).status == 0
    svg = "{http://www.w3.org/2000/svg}"
    frames = [g for g in ET.parse(path).getroot().iter(f"{svg}g") if g.get("class") == "frame"]
    animations = [next(f.iter(f"{svg}animate")) for f in frames]
    assert len(frames) == n and {a.get("dur") for a in animations} == {f"{0.8 * n:g}s"}
    for j in range(n):
        for t in ((j + 0.001) / n, (j + 0.5) / n, (j + 0.999) / n):
            shown = [i for i, a in enumerate(animations) if visible_at(a, t) == "visible"]
            assert shown == [j], (t, shown)


def test_svg_grows_linearly_with_the_frames(cli, tmp_path: Any) -> None:
    # 30x30 = 900 frames: each frame's animation names at most three values, not one per frame
    sizes = {}
    for n in (10, 30):
        path = tmp_path / f"{n}.svg"
        cli("kconv", "--input", f"{n + 2}x{n + 2}", "--kernel", "3x3", "--draw", str(path), "-f", "tsv")
        sizes[n * n] = path.stat().st_size
    per_frame_small, per_frame_large = sizes[100] / 100, sizes[900] / 900
    assert per_frame_large < 1.2 * per_frame_small, sizes
