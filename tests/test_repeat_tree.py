"""The analysis tree: children per sequence, how often each child runs, rows walked once for every
view (with a huge repeat folded), and the limit on distinct copies. Expected values by hand."""

from __future__ import annotations

import pytest

from layercalc import analyse
from layercalc import analysis
from layercalc.errors import ConfigError


def test_block_children_are_kept_per_sequence() -> None:
    report = analyse({"input": [2, 5, 5], "layers": [{"residual": {
        "body": [{"conv2d": {"out_channels": 2, "kernel_size": 3, "padding": 1}}, "relu"],
        "shortcut": [{"conv2d": {"out_channels": 2, "kernel_size": 1}}],
    }}]})
    (block,) = report.entries
    assert [[c.type for c in seq] for seq in block.sequences] == [["conv2d", "relu"], ["conv2d"]]
    assert [c.seg for c in block.children] == ["body.0", "body.1", "shortcut.0"]


def test_runs_say_how_often_and_whether_the_input_needs_a_gradient() -> None:
    # maxpool 2 halves 8 -> 4 -> 2 -> 1, then 1 -> 1 (the first copy whose output equals its input):
    # 4 distinct copies, the last runs 5 - 3 = 2 times
    report = analyse({"input": [1, 8, 8], "layers": [{"maxpool2d": {"kernel_size": 2, "ceil_mode": True}, "repeat": 5}]})
    (group,) = report.entries
    (runs,) = list(group.runs())
    assert [(r.entry.output_shape, r.times) for r in runs] == [
        ((1, 1, 4, 4), 1), ((1, 1, 2, 2), 1), ((1, 1, 1, 1), 1), ((1, 1, 1, 1), 2)]
    assert [r.grad for r in runs] == [False] * 4 and not runs[-1].later_grad  # no parameters anywhere
    (runs,) = list(group.runs(grad=True))
    assert all(r.grad and r.later_grad for r in runs)
    # a layer with parameters makes the inputs after it need gradients, not its own
    fc = analyse({"input": [3], "layers": [{"linear": {"out_features": 3}, "repeat": 4}]}).entries[0]
    (runs,) = list(fc.runs())
    assert [(r.times, r.grad, r.later_grad) for r in runs] == [(4, False, True)]


def test_group_row_type_and_folded_row_numbers() -> None:
    # linear 3->3 (12 params, 2·9 = 18 MACs at batch 2, output 2·3 elements · 4 bytes) repeated 1000 times
    report = analyse({"input": [3], "batch": 2, "layers": [{"linear": {"out_features": 3}, "repeat": 1000, "name": "fc"}]})
    rows = list(report.rows())
    assert [(r["path"], r["type"], r["depth"]) for r in rows] == [
        ("fc", "repeat", 0), ("fc.0", "linear", 1), ("fc.1-999", "linear", 1)]
    folded = rows[2]
    assert (folded["params"], folded["buffers"], folded["macs"], folded["flops"]) == (12 * 999, 0, 18 * 999, 36 * 999)
    assert folded["activation_bytes"] == 2 * 3 * 4 * 999 and folded["copies"] == 999 and folded["name"] == "fc.1-999"
    assert rows[0]["activation_bytes"] == 2 * 3 * 4  # a group row: its output once
    assert [r.copies for r in report.walk()] == [1, 1, 999]


def test_listing_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"input": [3], "layers": [{"linear": {"out_features": 3}, "repeat": 3, "name": "fc"}]}
    assert [r["path"] for r in analyse(config).rows()] == ["fc", "fc.0", "fc.1", "fc.2"]
    monkeypatch.setattr(analysis, "LISTED_COPIES", 2)  # then 3 copies fold: copy 0, and copies 1-2 in one row
    rows = list(analyse(config).rows())
    assert [(r["path"], r.get("copies")) for r in rows] == [("fc", None), ("fc.0", None), ("fc.1-2", 2)]
    block = {"input": [3], "layers": [{"sequential": {"layers": ["relu"]}, "repeat": 3, "name": "g"}]}
    # a folded block lists no children: they are the listed copy's
    assert [r["path"] for r in analyse(block).rows()] == ["g", "g.0", "g.0.0", "g.1-2"]
    monkeypatch.setattr(analysis, "LISTED_COPIES", 1)
    config["layers"][0]["repeat"] = 2  # one copy left over is a plain row
    assert [(r["path"], r.get("copies")) for r in analyse(config).rows()] == [("fc", None), ("fc.0", None), ("fc.1", None)]


def test_folded_rows_with_distinct_copies_and_depth() -> None:
    # maxpool (ceil) 8 -> 4 -> 2 -> 1 -> 1 ...: four distinct copies listed, then the rest folded
    config = {"input": [1, 8, 8], "layers": [{"maxpool2d": {"kernel_size": 2, "ceil_mode": True}, "repeat": 500, "name": "p"}]}
    report = analyse(config)
    assert [r["path"] for r in report.rows()] == ["p", "p.0", "p.1", "p.2", "p.3", "p.4-499"]
    assert [r["path"] for r in report.rows(depth=0)] == ["p"]


def test_distinct_copy_limit() -> None:
    # convtranspose k=2 grows the length by one each copy: the shape never settles
    grow = {"convtranspose2d": {"out_channels": 1, "kernel_size": [1, 2]}}
    ok = analyse({"input": [1, 1, 1], "layers": [{**grow, "repeat": analysis.MAX_DISTINCT_COPIES - 1}]})
    assert ok.output_shape == (1, 1, 1, analysis.MAX_DISTINCT_COPIES)
    with pytest.raises(ConfigError, match="the shape still changes after 10,000 copies"):
        analyse({"input": [1, 1, 1], "layers": [{**grow, "repeat": analysis.MAX_DISTINCT_COPIES}]})


NESTED = {"input": [4], "layers": [
    "relu",
    {"residual": {"body": [{"linear": {"out_features": 4}, "name": "fa"}, "relu"],
                  "shortcut": [{"linear": {"out_features": 4, "bias": False}, "name": "fs"}]}},
    {"sequential": {"layers": [{"linear": {"out_features": 4}, "name": "fb"}]}, "repeat": 2, "name": "blk"},
]}


def test_nested_rows_names_depths_and_backward() -> None:
    from layercalc.api import report_data

    rows = report_data(analyse(NESTED), training=True, optimizer="sgd")["layers"]
    # linear 4->4 at batch 1: 16 MACs forward; backward dW 16, plus dL/dx 16 when its input needs a gradient.
    # The residual's linears see the input of a parameter-free relu: no dL/dx. blk comes after them: dL/dx.
    # (A named nested entry is addressed by its name; an unnamed one by its index.)
    got = [(r["path"], r["name"], r["type"], r["depth"], r["backward_macs"]) for r in rows]
    assert got == [
        ("relu1", "relu1", "relu", 0, 0),
        ("residual1", "residual1", "residual", 0, 32),
        ("residual1.body.fa", "fa", "linear", 1, 16),
        ("residual1.body.1", got[3][1], "relu", 1, 0),
        ("residual1.shortcut.fs", "fs", "linear", 1, 16),
        ("blk", "blk", "repeat", 0, 64),
        ("blk.0", "blk.0", "sequential", 1, 32),
        ("blk.0.fb", "fb", "linear", 2, 32),
        ("blk.1", "blk.1", "sequential", 1, 32),
        ("blk.1.fb", "fb", "linear", 2, 32),
    ]
    assert [r["path"] for r in analyse(NESTED).rows(depth=1)] == [
        "relu1", "residual1", "residual1.body.fa", "residual1.body.1", "residual1.shortcut.fs", "blk", "blk.0", "blk.1"]


def test_depth_folds_nested_blocks() -> None:
    config = {"input": [3], "layers": [{"sequential": {"layers": [{"sequential": {"layers": ["relu"]}}]}}]}
    assert [r["path"] for r in analyse(config).rows(depth=1)] == ["sequential1", "sequential1.0"]
    assert [r["path"] for r in analyse(config).rows()] == ["sequential1", "sequential1.0", "sequential1.0.0"]


def test_a_repeat_counts_as_its_copies_written_out() -> None:
    """repeat: 3 of a shape-keeping grouped conv = the three copies written out, under every
    convention, in the forward, the backward and --compare (a metamorphic check)."""
    from layercalc.conventions import Costing, compare, training
    from layercalc.layers.peers import CONVENTIONS

    conv = {"conv2d": {"out_channels": 4, "kernel_size": 3, "padding": 1, "groups": 2}}
    head = {"conv2d": {"out_channels": 4, "kernel_size": 1}}
    repeated = analyse({"input": [4, 5, 5], "batch": 2, "layers": [head, {**conv, "repeat": 3}]})
    written = analyse({"input": [4, 5, 5], "batch": 2, "layers": [head, conv, conv, conv]})
    for c in CONVENTIONS:
        assert Costing(repeated, c).total() == Costing(written, c).total(), c
        assert training(repeated, c) == training(written, c), c
    assert compare(repeated)["rows"] == compare(written)["rows"]
    assert compare(repeated)["total"] == compare(written)["total"]


def test_training_defaults_to_layercalc_and_adam() -> None:
    from layercalc.conventions import training

    report = analyse({"input": [4], "layers": [{"linear": {"out_features": 3}}]})
    # 4·3 + 3 = 15 params, float32: weights, gradients and adam's two states = 4 · 60 bytes; output 12 bytes
    t = training(report)
    assert (t["forward_macs"], t["backward_macs"], t["optimizer_bytes"], t["training_bytes"]) == (12, 12, 120, 240 + 12)
