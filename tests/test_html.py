"""The HTML report: well-formed, self-contained, the exact totals, identical copies folded, and it
opens in a real browser (Debian's chromium, headless) with no console errors."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from layercalc import api
from layercalc.render.html import report_html

VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "path", "circle", "line"}


class Checker(HTMLParser):
    """Collects tags, fails on a closing tag that does not close the open one, notes external references."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: dict[str, int] = {}
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.external.append(value)
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page(config: str, **options: object) -> tuple[str, Checker]:
    data = api.report_data(api.analyse(config), **options)
    html = report_html(data)
    checker = Checker()
    checker.feed(html)
    checker.close()
    assert checker.open == [], checker.open
    return html, checker


def test_resnet18_page_is_well_formed_and_self_contained() -> None:
    html, checker = page("configs/resnet18.yaml")
    assert checker.external == []  # no CDN, no stylesheet or script to fetch
    text = "".join(checker.text)
    # torchvision's resnet18: 11,689,512 params, 1,814,073,344 MACs at 224×224
    assert "11,689,512" in text and "1,814,073,344" in text
    assert checker.tags["details"] >= 8  # layer1..4 and their blocks fold


def test_identical_copies_fold_as_one_row() -> None:
    html, checker = page("configs/llama3_8b.yaml")
    assert "×32" in "".join(checker.text)  # the 32 decoder layers: one row, the other 31 named inside
    assert html.count("input_layernorm") == 1  # the repeat's layers written once, not 32 times
    assert len(html.encode()) < 200_000


def test_training_memory_parts() -> None:
    _, checker = page("configs/mnist_mlp.yaml", training=True)
    text = "".join(checker.text)
    assert all(part in text for part in ("gradients", "optimizer states", "kept activations"))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it as root)")
def test_opens_in_chromium_without_console_errors(tmp_path: Path) -> None:
    html, _ = page("configs/resnet18.yaml")
    path = tmp_path / "resnet18.html"
    path.write_text(html)
    run = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0
    assert "11,689,512" in run.stdout  # the DOM the browser built holds the totals
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []


HOSTILE = {"name": "<img src=x onerror=\"document.title='ran'\">", "input": [4], "layers": [
    {"linear": {"out_features": 3}, "name": "</script><script>alert(1)</script>"}]}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it as root)")
def test_names_from_a_hostile_config_stay_text(tmp_path: Path) -> None:
    html = report_html(api.report_data(api.analyse(HOSTILE)))
    assert "<img src=x" not in html and "</script><script>" not in html
    path = tmp_path / "hostile.html"
    path.write_text(html)
    run = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0
    assert "<title>layercalc summary: &lt;img" in run.stdout  # no script ran and set the title
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in run.stdout  # the name is shown, as text


def test_command_line_html(cli) -> None:
    run = cli("summary", "configs/resnet18.yaml", "-f", "html")
    assert run.status == 0 and run.out.startswith("<!DOCTYPE html>") and "11,689,512" in run.out
    for args in (["serve", "configs/llama3_8b.yaml", "--gpu", "h100-sxm"], ["train", "configs/gpt2.yaml"]):
        run = cli(*args, "-f", "html")
        checker = Checker()
        checker.feed(run.out)
        assert run.status == 0 and checker.open == [] and checker.external == []
    run = cli("layers", "-f", "html")
    assert run.status == 2 and run.out == "" and "--format html is not offered for the layer catalog" in run.err
