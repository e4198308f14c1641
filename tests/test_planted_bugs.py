"""tests/planted_bugs.py stays runnable: each planted bug's text is still in its file, exactly once
(a refactor that moves the code must move the bug with it, or the regression guards nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from planted_bugs import BUGS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name, file, old, new, tests", BUGS, ids=[b[0] for b in BUGS])
def test_each_planted_bug_still_applies(name: str, file: str, old: str, new: str, tests: str) -> None:
    assert (ROOT / file).read_text().count(old) == 1, f"{name}: the text to change is not in {file} exactly once"
    assert all((ROOT / t.split("::")[0]).exists() for t in tests.split()), f"{name}: a test file it names is gone"
