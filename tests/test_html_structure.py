"""The HTML report as a browser lays it out at 1280×800, compared with a stored one by structure, not
pixels: the elements Chromium built (layer rows, folded repeats, share bars, folding blocks, memory
parts) counted by kind, and the text of the totals (tests/reference/html_structure.json).

The stored totals are checked here against figures that do not come from layercalc (torchvision's
and Hugging Face's parameter counts, hand calculations); the element counts are the page's shape,
tied to the config's structure by the checks beside them (two bars a row, one ×N per identical run).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from layercalc import api
from layercalc.render.html import report_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HERE = Path(__file__).resolve().parent
STORED = json.loads((HERE / "reference" / "html_structure.json").read_text())
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it"
                                " as root): the page's layout in a browser is not checked")


class Structure(HTMLParser):
    """Counts of the report's elements by kind, and the totals table's text, from a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = {"rows": 0, "bars_params": 0, "bars_macs": 0, "details": 0, "details_open": 0, "memory_parts": 0}
        self.folded: list[str] = []
        self.totals: dict[str, str] = {}
        self._cell: list[str] | None = None  # the totals row being read
        self._in: str | None = None  # "times" or "td" while reading their text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        self.counts["rows"] += "row" in classes and "head" not in classes
        self.counts["bars_params"] += classes[:2] == ["bar", "p"]
        self.counts["bars_macs"] += classes[:2] == ["bar", "m"]
        self.counts["details"] += tag == "details"
        self.counts["details_open"] += tag == "details" and "open" in a
        self.counts["memory_parts"] += tag == "rect"
        if "times" in classes:
            self._in = "times"
            self.folded.append("")
        if tag == "table" and "totals" in classes:
            self._cell = []
        if tag == "td" and self._cell is not None:
            self._in = "td"
            self._cell.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("span", "td"):
            self._in = None
        if tag == "tr" and self._cell:
            self.totals[self._cell[0]] = self._cell[1]
            self._cell = []
        if tag == "table":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in == "times":
            self.folded[-1] += data
        elif self._in == "td" and self._cell is not None:
            self._cell[-1] += data

    def result(self) -> dict[str, Any]:
        return {**self.counts, "folded": self.folded, "totals": self.totals}


def browse(config: str, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """The page's structure as Chromium builds it at 1280×800, and a screenshot of it."""
    path = tmp_path / "report.html"
    path.write_text(report_html(api.report_data(api.analyse(config))))
    common = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,800"]
    dom = subprocess.run([*common, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    run = subprocess.run([*common, f"--screenshot={shot}", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    structure = Structure()
    structure.feed(dom.stdout)
    return structure.result(), shot


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (bytes 16 to 24, big-endian)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def llama3_8b_macs() -> int:
    """By hand: every matrix product's weight once per token (the params less the embedding table and the
    norms), plus attention's q·kᵀ and A·v, 2·h·T²·d a layer (32 heads of 128, T = 2048, 32 layers)."""
    params, embedding, norms = 8_030_261_248, 128_256 * 4096, (2 * 32 + 1) * 4096
    return 2048 * (params - embedding - norms) + 32 * 2 * 32 * 2048 * 2048 * 128


# figures from outside layercalc: torchvision's resnet18 (11,689,512 params, 1,814,073,344 MACs at
# 224×224, as tests/test_html.py checks; buffers by hand: 20 batch norms of 4,800 channels in all hold
# a running mean and variance each and one step counter: 2·4,800 + 20 = 9,620); Hugging Face's
# Llama-3-8B (8,030,261,248 params, no buffers) with its MACs by hand above
OUTSIDE = {
    "resnet18": {"params": 11_689_512, "buffers": 9_620, "MACs": 1_814_073_344},
    "llama3_8b": {"params": 8_030_261_248, "buffers": 0, "MACs": llama3_8b_macs()},
}


def test_stored_totals_are_the_outside_figures() -> None:
    for name, figures in OUTSIDE.items():
        totals = STORED[name]["totals"]
        for key, value in figures.items():
            assert totals[key] == f"{value:,}", (name, key)
        assert totals["FLOPs"] == f"{2 * figures['MACs']:,}" and totals["trainable params"] == totals["params"]


@pytest.mark.parametrize("name", ["resnet18", "llama3_8b"])
def test_page_structure_at_1280x800(tmp_path: Path, name: str) -> None:
    got, shot = browse(f"configs/{name}.yaml", tmp_path)
    assert png_size(shot) == (1280, 800)
    assert shot.stat().st_size > 20_000  # drawn: a blank 1280×800 page compresses to a few KB
    assert got == STORED[name]
    # what ties the counts to the config: two share bars a layer row; the identical runs fold once each
    # (resnet18: layer1's two basic blocks, the later stages' first blocks downsample; Llama 3: 32 decoder
    # layers); the memory bar's parts (Llama 3 adds its KV cache)
    assert got["bars_params"] == got["bars_macs"] == got["rows"]
    assert got["folded"] == {"resnet18": ["×2"], "llama3_8b": ["×32"]}[name]
    assert got["memory_parts"] == {"resnet18": 2, "llama3_8b": 3}[name]
