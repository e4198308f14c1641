"""The manual (docs/, README.md): its examples are what the commands print today, every relative
link and image resolves, and the MkDocs site builds with --strict (broken links fail)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import examples  # noqa: E402  (docs/examples.py, the generator of the manual's examples)

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_examples_match_what_the_commands_print() -> None:
    assert examples.stale() == [], "run: python docs/examples.py"


def test_every_example_is_shown_somewhere() -> None:
    shown = {m.group(2) for page in examples.pages() for m in examples.BLOCK.finditer(page.read_text())}
    assert shown == set(examples.TEXT), "each example is in some page, and each block names an example"


@pytest.mark.parametrize("page", examples.pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    broken = [target for target in LINK.findall(text)
              if not re.match(r"[a-z]+:|#", target)  # a web address or an anchor on the same page
              and not (page.parent / target.split("#")[0]).exists()]
    assert broken == [], f"{page.name}: links to missing files: {broken}"


@pytest.mark.skipif(importlib.util.find_spec("material") is None, reason="mkdocs-material is not installed")
def test_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
