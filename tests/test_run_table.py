"""The run table (Report.run_table): one row per place an entry runs, how many times it runs in all,
whether its input needs a gradient; every count is a fold over it. Expected values by hand."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from layercalc import analyse
from layercalc import analysis
from layercalc.analysis import Execution, Report, entry_table, fold
from layercalc.conventions import backward_macs, training
from layercalc.verify.memory import held_params

PACKAGE = Path(analysis.__file__).resolve().parent

# linear 3 -> 3: 9 weights + 3 biases = 12 params; 9 MACs at batch 1
FC3 = {"linear": {"out_features": 3}}


def table(report: Report) -> list[tuple[str, str, int, int, bool, bool]]:
    """(path, type, depth, copies, grad, listed) of every row."""
    return [(x.path, x.entry.type, x.depth, x.copies, x.grad, x.listed) for x in report.run_table]


def same_totals(report: Report) -> None:
    """The report's totals equal the folds of the table's layers (a layer's own numbers, every run)."""
    total = report.total
    for key in ("params", "trainable_params", "buffers", "macs"):
        assert total[key] == report.fold(lambda x: getattr(x.entry, key)), key


def test_a_short_repeat_lists_every_copy_and_its_gradient() -> None:
    # one distinct copy (3 -> 3) runs 4 times; the first copy's input is the network's (no
    # gradient), every later copy's follows a trainable linear
    report = analyse({"input": [3], "layers": [{**FC3, "repeat": 4, "name": "fc"}]})
    assert table(report) == [
        ("fc", "repeat", 0, 1, False, True),
        ("fc.0", "linear", 1, 1, False, True),
        ("fc.1", "linear", 1, 1, True, True),
        ("fc.2", "linear", 1, 1, True, True),
        ("fc.3", "linear", 1, 1, True, True),
    ]
    assert report.fold(lambda x: x.entry.params) == 4 * 12 == report.total["params"]
    assert [x.path for x in report.walk()] == [x.path for x in report.run_table]


def test_a_long_repeat_folds_the_identical_rest() -> None:
    report = analyse({"input": [3], "layers": [{**FC3, "repeat": 10**9, "name": "fc"}]})
    assert table(report) == [
        ("fc", "repeat", 0, 1, False, True),
        ("fc.0", "linear", 1, 1, False, True),
        ("fc.1-999999999", "linear", 1, 10**9 - 1, True, True),
    ]
    assert report.total["params"] == 12 * 10**9 == report.fold(lambda x: x.entry.params)
    assert report.total["macs"] == 9 * 10**9


def test_nested_repeats_multiply_and_nothing_below_a_folded_row_is_listed() -> None:
    # g: a sequential of (linear 3 -> 3, repeat 3), repeated 200 times. Listed: g.0 and its three
    # copies, then g.1-199 standing for 199 runs; below it, not listed, the inner repeat's three
    # copies run 199 times each. Linear runs: 3 + 3 x 199 = 600
    inner = {"sequential": {"layers": [{**FC3, "repeat": 3}]}, "repeat": 200, "name": "g"}
    report = analyse({"input": [3], "layers": [inner]})
    assert table(report) == [
        ("g", "repeat", 0, 1, False, True),
        ("g.0", "sequential", 1, 1, False, True),
        ("g.0.0", "repeat", 2, 1, False, True),
        ("g.0.0.0", "linear", 3, 1, False, True),
        ("g.0.0.1", "linear", 3, 1, True, True),
        ("g.0.0.2", "linear", 3, 1, True, True),
        ("g.1-199", "sequential", 1, 199, True, True),
        ("g.1-199.0", "repeat", 2, 199, True, False),
        ("g.1-199.0.0", "linear", 3, 199, True, False),
        ("g.1-199.0.1", "linear", 3, 199, True, False),
        ("g.1-199.0.2", "linear", 3, 199, True, False),
    ]
    assert sum(x.copies for x in report.executions(leaf=True)) == 600
    assert report.total["params"] == 600 * 12 == report.fold(lambda x: x.entry.params)
    assert [x.path for x in report.walk()] == [x.path for x in report.executions(listed=True)]
    assert [x.path for x in report.walk(depth=1)] == ["g", "g.0", "g.1-199"]
    # the rows under the folded row: it and its subtree, in order
    folded = report.run_table[6]
    assert [x.path for x in report.executions(folded)] == ["g.1-199", "g.1-199.0", "g.1-199.0.0", "g.1-199.0.1", "g.1-199.0.2"]
    assert report.fold(lambda x: x.entry.params, under=folded) == 597 * 12


def test_frozen_layers_and_the_gradient_rule() -> None:
    # linear 4 -> 8 frozen, relu, linear 8 -> 4 (trainable), linear 4 -> 4 frozen, relu:
    # no input needs a gradient until the first trainable linear has run; from then on every input does
    report = analyse({"input": [4], "layers": [
        {"linear": {"out_features": 8}, "trainable": False, "name": "a"}, {"relu": {}, "name": "b"},
        {"linear": {"out_features": 4}, "name": "c"},
        {"linear": {"out_features": 4}, "trainable": False, "name": "d"}, {"relu": {}, "name": "e"},
    ]})
    assert [(x.path, x.grad, x.trains) for x in report.run_table] == [
        ("a", False, False), ("b", False, True), ("c", False, True), ("d", True, False), ("e", True, True)]
    # trainable params: c only, 8·4 + 4 = 36; frozen a 4·8 + 8 = 40 and d 4·4 + 4 = 20
    assert report.fold(lambda x: x.entry.trainable_params) == 36 == report.total["trainable_params"]
    assert report.total["params"] == 96
    assert [x.path for x in report.executions(grad=True)] == ["d", "e"]


def test_a_frozen_repeat_needs_no_gradient_anywhere() -> None:
    report = analyse({"input": [3], "layers": [{**FC3, "repeat": 3, "trainable": False, "name": "fc"}]})
    assert [(x.path, x.grad, x.trains) for x in report.run_table] == [
        ("fc", False, False), ("fc.0", False, False), ("fc.1", False, False), ("fc.2", False, False)]


def test_shared_params_count_once_and_a_check_holds_them_twice() -> None:
    # embedding 10 x 4 (40 params) on token ids; the head's weight (10 x 4) is the embedding's, so
    # it adds its bias only: 10. The head's input follows the embedding's trainable table.
    report = analyse({"input": [5], "layers": [
        {"embedding": {"num_embeddings": 10, "embedding_dim": 4}, "name": "emb"},
        {"linear": {"out_features": 10, "tied_to": "emb"}, "name": "head"},
    ]})
    assert [(x.path, x.grad, x.entry.params) for x in report.run_table] == [("emb", False, 40), ("head", True, 10)]
    assert report.total["params"] == 50 == report.fold(lambda x: x.entry.params)
    held = sum(held_params(e) for e in report.entries)
    assert held == 40 + 50  # a check gives the tied weight an array of its own


def test_residual_and_branch_blocks() -> None:
    # residual: body linear 4 -> 4 then relu, shortcut linear 4 -> 4 frozen. The shortcut starts from
    # the block's input (no gradient), whatever the body did; the relu after the block needs one.
    # concat: branch 0 relu, branch 1 linear 4 -> 2; both branches start from the block's input
    # (now needing a gradient)
    report = analyse({"input": [4], "layers": [
        {"residual": {"body": [{"linear": {"out_features": 4}}, "relu"],
                      "shortcut": [{"linear": {"out_features": 4}, "trainable": False}]}, "name": "res"},
        {"relu": {}, "name": "after"},
        {"concat": {"branches": [["relu"], [{"linear": {"out_features": 2}}]]}, "name": "cat"},
    ]})
    assert [(x.path, x.depth, x.grad, x.leaf) for x in report.run_table] == [
        ("res", 0, False, False), ("res.body.0", 1, False, True), ("res.body.1", 1, True, True),
        ("res.shortcut.0", 1, False, True), ("after", 0, True, True),
        ("cat", 0, True, False), ("cat.branches.0.0", 1, True, True), ("cat.branches.1.0", 1, True, True),
    ]
    # params 20 (body) + 20 (shortcut, frozen) + 10 (concat's linear); trainable 30
    assert report.total["params"] == 50 and report.total["trainable_params"] == 30
    same_totals(report)


def test_the_training_counts_are_folds_of_the_table() -> None:
    report = analyse({"input": [3], "layers": [{"sequential": {"layers": [{**FC3, "repeat": 3}]}, "repeat": 200}]})
    cost = training(report)
    assert cost["backward_macs"] == sum(backward_macs(report, x, "layercalc") for x in report.walk(depth=0))
    # linear 3 -> 3 at batch 1: dL/dW 9 MACs every run, dL/dx 9 more where the input needs it:
    # every run but the very first (600 runs, 599 with dL/dx)
    assert cost["backward_macs"] == 600 * 9 + 599 * 9


def test_an_entry_table_stands_alone() -> None:
    report = analyse({"input": [3], "layers": [{**FC3, "repeat": 500, "name": "fc"}]})
    (group,) = report.entries
    rows = entry_table(group)
    assert [(x.path, x.copies, x.listed) for x in rows] == [("fc", 1, False), ("fc.0", 1, False), ("fc.1-499", 499, False)]
    assert fold(rows[1:], lambda x: x.entry.params) == 500 * 12
    with pytest.raises(ValueError, match="not a row of this table"):
        report.executions(rows[1])


def _walk_calls() -> dict[str, int]:
    """Calls of Entry.runs() (a walk over the tree) per module of the package."""
    found: dict[str, int] = {}
    for path in PACKAGE.rglob("*.py"):
        tree: Any = ast.parse(path.read_text())
        n = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute) and node.func.attr == "runs")
        if n:
            found[str(path.relative_to(PACKAGE))] = n
    return found


def test_the_tree_is_walked_in_one_place() -> None:
    # every count folds the run table; a new walk over Entry.runs() would be a second copy of the
    # gradient and repeat rules.
    calls = _walk_calls()
    allowed = {"analysis.py"}
    assert {k: v for k, v in calls.items() if k not in allowed} == {}
    assert calls.get("analysis.py") == 1


def test_rows_are_executions() -> None:
    report = analyse({"input": [3], "layers": [FC3]})
    (row,) = report.walk()
    assert isinstance(row, Execution) and row.input_shape == (1, 3) and row.output_shape == (1, 3)


def test_analysis_imports_only_the_model() -> None:
    # the calculator is imported by api, conventions and render; an import back (even inside a
    # function) would make a cycle
    tree = ast.parse((PACKAGE / "analysis.py").read_text())
    imported = {node.module or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1 for alias in node.names}
    assert imported <= {"config", "errors", "layers", "lora"}, imported  # lora: adapters are layers too
