"""kconv -f html: the lecture on one page (K_conv, the sliding window, the terms), linked by the
positions each element joins; self-contained, readable without JavaScript, and it runs in a real
browser (Debian's chromium, headless) with no console errors.

Expected matrices are the hand calculations of tests/test_kconv.py, written out again here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_html import Checker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Debian's chromium is not installed (.ci/run installs it as root)"


class Cells(HTMLParser):
    """The K_conv table's rows of cell texts, and every element's data-j with its tag and text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.joined: list[tuple[str, str]] = []  # (tag, data-j)
        self.in_matrix = False
        self.cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class") == "k":
            self.in_matrix = True
        if self.in_matrix and tag == "tr":
            self.rows.append([])
        if self.in_matrix and tag in ("td", "th"):
            self.cell = True
            self.rows[-1].append("")
        if a.get("data-j"):
            self.joined.append((tag, a["data-j"] or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_matrix = False
        if tag in ("td", "th"):
            self.cell = False

    def handle_data(self, data: str) -> None:
        if self.in_matrix and self.cell:
            self.rows[-1][-1] += data


def page(cli, *args: str) -> tuple[str, Cells]:
    run = cli("kconv", *args, "-f", "html")
    assert run.status == 0, run.err
    checker = Checker()
    checker.feed(run.out)
    checker.close()
    assert checker.open == [] and checker.external == []  # well formed; nothing fetched
    cells = Cells()
    cells.feed(run.out)
    return run.out, cells


CASES = {
    # y_ij = Σ k_pq x_(i+p, j+q) on a 3x3 input with a 2x2 kernel: each row the kernel slid one step
    "2d": (["--input", "3x3", "--kernel", "2x2"], [
        ["", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"],
        ["y1", "k1", "k2", "0", "k3", "k4", "0", "0", "0", "0"],
        ["y2", "0", "k1", "k2", "0", "k3", "k4", "0", "0", "0"],
        ["y3", "0", "0", "0", "k1", "k2", "0", "k3", "k4", "0"],
        ["y4", "0", "0", "0", "0", "k1", "k2", "0", "k3", "k4"],
    ]),
    # 1-D, stride 2, padding 1, dilation 2 on 6 inputs: y_i reads x at 2i − 1 and 2i + 1 (x−1 is padding)
    "1d": (["--input", "6", "--kernel", "2", "--stride", "2", "--padding", "1", "--dilation", "2"], [
        ["", "x0", "x1", "x2", "x3", "x4", "x5"],
        ["y0", "0", "k1", "0", "0", "0", "0"],
        ["y1", "0", "k0", "0", "k1", "0", "0"],
        ["y2", "0", "0", "0", "k0", "0", "k1"],
    ]),
    # transposed 1-D, kernel 3, stride 2, padding 1 on 3 inputs: x_i stamps k_t at 2i + t − 1 of 5 outputs
    "transposed": (["--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed"], [
        ["", "x0", "x1", "x2"],
        ["y0", "k1", "0", "0"],
        ["y1", "k2", "k0", "0"],
        ["y2", "0", "k1", "0"],
        ["y3", "0", "k2", "k0"],
        ["y4", "0", "0", "k1"],
    ]),
}


@pytest.mark.parametrize("case", CASES)
def test_page_holds_the_exact_k_conv(cli, case: str) -> None:
    args, expected = CASES[case]
    html, cells = page(cli, *args)
    assert cells.rows == expected
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'' in html


def _triples(cells: Cells, tag: str) -> list[str]:
    return [j for t, j in cells.joined if t == tag and len(j.split()) == 3]


@pytest.mark.parametrize("case", CASES)
def test_entries_terms_and_window_join_the_same_positions(cli, case: str) -> None:
    # every nonzero K_conv entry is one product k_t · (input a, output b); ∇x's terms are those products
    # read by column, the window's footprint cells those products read frame by frame. The three views
    # must name the same (a, b, t) set, each product once per view
    args, expected = CASES[case]
    _, cells = page(cli, *args)
    entries = _triples(cells, "td")
    nonzero = sum(v != "0" for row in expected[1:] for v in row[1:])
    assert len(entries) == len(set(entries)) == nonzero
    terms = _triples(cells, "span")
    views = 2 if case == "transposed" else 1  # a transposed conv's y and its ∇x are both sums of the same products
    assert sorted(terms) == sorted(entries * views)
    assert sorted(_triples(cells, "rect")) == sorted(entries)


def test_a_1d_entry_joins_its_positions(cli) -> None:
    # K_conv[y1][x3] = k1 (y1 reads x at 2·1 + 1·2 − 1 = 3 with tap 1): input 3, output 1, tap 1
    _, cells = page(cli, *CASES["1d"][0])
    assert ("td", "a3 b1 k1") in cells.joined and ("span", "a3 b1 k1") in cells.joined


def test_readable_without_javascript(cli) -> None:
    # no script: the first frame is drawn and every frame's sum is written out
    html, _ = page(cli, "--input", "3x3", "--kernel", "2x2")
    assert html.count('<g class="frame on">') == 1 and html.count('<g class="frame') == 4
    sums = re.findall(r'<li class="frame-eq[^"]*">([^<]*)</li>', html)
    assert sums[0] == "y[0,0] = k[0,0]·x[0,0] + k[0,1]·x[0,1] + k[1,0]·x[1,0] + k[1,1]·x[1,1]"
    assert len(sums) == 4


def test_large_matrix_is_a_note_not_a_table(cli) -> None:
    html, cells = page(cli, "--input", "11x11", "--kernel", "3x3")
    assert cells.rows == [] and "too large to read as a table" in html


def chromium_dom(path: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The DOM after the page's script ran, and the console's lines."""
    run = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                          "--dump-dom", path.as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.parametrize("case", CASES)
def test_opens_in_chromium_steps_and_lights(cli, tmp_path: Path, case: str) -> None:
    html, _ = page(cli, *CASES[case][0])
    path = tmp_path / "kconv.html"
    path.write_text(html)
    dom, console = chromium_dom(path)
    assert console == []
    frames = len(re.findall(r'<g class="frame', html))
    assert f"frame 1 of {frames}" in dom  # the script ran: it numbers the frames
    # a link to frame 2 opens it: its group and its sum are the ones shown
    dom, console = chromium_dom(path, "#frame-2")
    assert console == [] and f"frame 2 of {frames}" in dom
    shown = [m.group(1) for m in re.finditer(r'<g class="frame( on)?"', dom)]
    assert shown.index(" on") == 1 and shown.count(" on") == 1
    # pointing at a product lights its matrix entry, its terms, its footprint cell, and the input, output and tap cells
    triple = _triples(page(cli, *CASES[case][0])[1], "td")[-1]
    a, b, k = triple.split()
    dom, console = chromium_dom(path, "#" + triple.replace(" ", "+"))
    assert console == []
    lit = re.findall(r'<(\w+)[^>]*class="[^"]*\blit\b[^"]*"[^>]*data-j="([^"]*)"|<(\w+)[^>]*data-j="([^"]*)"[^>]*class="[^"]*\blit\b', dom)
    joined = {(m[0] or m[2], m[1] or m[3]) for m in lit}
    assert ("td", triple) in joined and ("span", triple) in joined and ("rect", triple) in joined
    assert {("rect", a), ("rect", b), ("rect", k)} <= joined
    assert all(j in (triple, a, b, k) for _, j in joined)  # nothing else
