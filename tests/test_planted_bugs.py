"""tests/planted_bugs.py stays runnable: each plant's function is in its module and the code it
changes is in that function exactly once (a refactor that moves the code must keep the behaviour
findable, or the regression guards nothing); the plant machinery finds code wherever it moves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from planted_bugs import PLANTS, Plant, PlantBroken, planted

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("plant", PLANTS, ids=[p.name for p in PLANTS])
def test_each_planted_bug_still_applies(plant: Plant) -> None:
    try:
        text = planted(plant)
    except PlantBroken as exc:
        pytest.fail(f"BROKEN {exc}")
    assert ast.dump(ast.parse(text)) != ast.dump(ast.parse((ROOT / plant.file).read_text())), plant.name
    assert all((ROOT / t.split("::")[0]).exists() for t in plant.tests), f"{plant.name}: a test file it names is gone"


SOURCE = '''
def helper(a):
    return a + 1


class Box:
    def size(self, x):
        # a comment between tokens does not matter
        return helper(
            x) * 2
'''


def _plant_in(tmp_path: Path, source: str, where: str, old: str, new: str) -> str:
    (tmp_path / "pkg").mkdir(exist_ok=True)
    (tmp_path / "pkg" / "mod.py").write_text(source)
    return planted(Plant("demo", "pkg.mod", where, ((old, new),), ()), tmp_path)


def test_a_plant_finds_its_code_across_lines_and_only_in_its_function(tmp_path: Path) -> None:
    # "* 2" follows a call wrapped over two lines; "+ 1" elsewhere in the module is left alone
    text = _plant_in(tmp_path, SOURCE, "Box.size", "helper(x) * 2", "helper(x) * 3")
    assert "return helper(x) * 3\n" in text and "return a + 1" in text


def test_a_plant_survives_its_function_moving_within_the_module(tmp_path: Path) -> None:
    helper, box = SOURCE.split("\n\n\n")
    moved = box + "\n\ndef other(b):\n    return b\n\n" + helper
    assert "return a - 1" in _plant_in(tmp_path, moved, "helper", "a + 1", "a - 1")


@pytest.mark.parametrize("where, old, reason", [
    ("Box.missing", "x", "0 definitions of 'missing'"),
    ("size", "x", "0 definitions of 'size'"),  # a method is not a module-level function
    ("Box.size", "helper(x) * 4", "occurs 0 times"),
    ("Box.size", "x", "occurs 2 times"),
    ("helper", "helper(x) * 2", "occurs 0 times"),  # the code is in the module, not in that function
])
def test_a_plant_whose_function_or_code_is_gone_is_broken_naming_it(tmp_path: Path, where: str, old: str, reason: str) -> None:
    with pytest.raises(PlantBroken, match=reason) as caught:
        _plant_in(tmp_path, SOURCE, where, old, "y")
    assert str(caught.value).startswith("demo: in pkg.mod:")
