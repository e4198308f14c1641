"""Numbers checked row by row, not only in total: places where a wrong number once hid behind a
right total (a repeat that is the first trainable entry, folded rows under a peer's convention,
`trainable: false` through concat branches, "not counted" cells of --compare). Every expected value
is worked out by hand in the comments; each test was seen to fail against the bug it names."""

from __future__ import annotations

import pytest

from test_cli_options import parse

# input [4], batch 1: a frozen linear 4 -> 4, then linear 4 -> 4 repeated: the first trainable entry.
#   MACs of each linear: 4·4 = 16. Backward (autograd): frozen0 nothing (no parameter before it,
#   its own frozen); rep.0 dW only, 16 (its input needs no gradient); rep.1, rep.2, ... dW + dx = 32.
REPEAT = """\
input: [4]
layers:
  - linear: {{out_features: 4}}
    name: frozen0
    trainable: false
  - linear: {{out_features: 4}}
    repeat: {n}
    name: rep
"""


@pytest.mark.parametrize("convention", ["layercalc", "torch"])
def test_a_repeat_that_is_the_first_trainable_entry(cli, write, convention: str) -> None:
    """Its first copy needs no dL/dx, the later ones do: per row, per type and in total."""
    path = write("rep.yaml", REPEAT.format(n=3))
    rows = parse("tsv", cli("flops", path, "--training", "--convention", convention, "-f", "tsv").out)
    assert [(r["path"], r["backward_macs"]) for r in rows] == [
        ("frozen0", "0"), ("rep", "80"), ("rep.0", "16"), ("rep.1", "32"), ("rep.2", "32"), ("total", "80")]
    types = parse("tsv", cli("flops", path, "--training", "--convention", convention, "--by-type", "-f", "tsv").out)
    assert [(r["type"], r["count"], r["backward_macs"]) for r in types] == [("linear", "4", "80"), ("total", "4", "80")]


@pytest.mark.parametrize("convention", ["layercalc", "torch"])
def test_a_long_repeat_that_is_the_first_trainable_entry(cli, write, convention: str) -> None:
    """150 copies fold past the first: rep.0 16, rep.1-149 149·32 = 4,768; all 16 + 4,768 = 4,784."""
    path = write("rep.yaml", REPEAT.format(n=150))
    rows = parse("tsv", cli("flops", path, "--training", "--convention", convention, "-f", "tsv").out)
    assert [(r["path"], r["backward_macs"]) for r in rows] == [
        ("frozen0", "0"), ("rep", "4784"), ("rep.0", "16"), ("rep.1-149", "4768"), ("total", "4784")]
    types = parse("tsv", cli("flops", path, "--training", "--convention", convention, "--by-type", "-f", "tsv").out)
    assert [(r["type"], r["count"], r["backward_macs"]) for r in types] == [("linear", "151", "4784"), ("total", "151", "4784")]


# linear 4 -> 4 with bias, batch 2, 150 copies: the rows past 100 copies fold into one
#   layercalc: N·4·4 = 32 a copy; torchinfo: + N·out = 8, 40 a copy;
#   ptflops: its hook counts one sample, (32 + 8) / 2 = 20 a copy
@pytest.mark.parametrize("convention, per_copy", [("layercalc", 32), ("torchinfo", 40), ("ptflops", 20), ("thop", 32)])
def test_folded_rows_under_a_peer_convention(cli, write, convention: str, per_copy: int) -> None:
    path = write("long.yaml", "input: [4]\nbatch: 2\nlayers:\n  - linear: {out_features: 4}\n    repeat: 150\n    name: rep\n")
    rows = parse("tsv", cli("flops", path, "--convention", convention, "-f", "tsv").out)
    assert [(r["path"], int(r["macs"])) for r in rows] == [
        ("rep", 150 * per_copy), ("rep.0", per_copy), ("rep.1-149", 149 * per_copy), ("total", 150 * per_copy)]


# input [4], batch 1: a frozen concat of linear 4 -> 2 and linear 4 -> 3 (params 10 and 15, frozen
# by the concat's trainable: false), then head linear 5 -> 2 (params 12, trainable).
#   backward: the branches nothing (frozen, nothing trainable before them); head dW only, 5·2 = 10
CONCAT = """\
input: [4]
layers:
  - concat:
      branches:
        - [linear: {out_features: 2}]
        - [linear: {out_features: 3}]
    name: cat
    trainable: false
  - linear: {out_features: 2}
    name: head
"""


def test_trainable_false_reaches_into_concat_branches(cli, write) -> None:
    path = write("cat.yaml", CONCAT)
    rows = parse("tsv", cli("summary", path, "--training", "--columns", "trainable,params,trainable_params,backward_macs",
                            "-f", "tsv").out)
    assert [(r["path"], r["trainable"], r["params"], r["trainable_params"], r["backward_macs"]) for r in rows] == [
        ("cat", "false", "25", "0", "0"),
        ("cat.branches.0.0", "false", "10", "0", "0"),
        ("cat.branches.1.0", "false", "15", "0", "0"),
        ("head", "true", "12", "12", "10"),
        ("total", "", "37", "12", "10"),
    ]


# --compare on linear 4 -> 8, relu, linear 8 -> 3, batch 2 (test_cli_options' NET):
#   conv/linear: N·4·8 + N·8·3 = 64 + 48 = 112 for every tool but ptflops, whose hook counts one
#                sample: 56
#   bias: torchinfo N·(8 + 3) = 22; ptflops the same in its hook, one sample: 11; the rest none
#   activations: ptflops only: numel(y) = 16 in its hook, one sample 8, + numel(x) = 16 in F.relu: 24
#   total: ptflops 56 + 11 + 24 = 91, torchinfo 112 + 22 = 134
# A category a tool does not count is an empty cell, never 0 (a 0 would claim the tool counted it).
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_compare_leaves_not_counted_cells_empty(cli, net, fmt: str) -> None:
    rows = parse(fmt, cli("flops", net, "--compare", "-f", fmt).out)
    tools = ["layercalc", "torch", "fvcore", "thop", "ptflops", "torchinfo"]
    assert [[r["category"], *(r[t] for t in tools)] for r in rows] == [
        ["conv/linear", "112", "112", "112", "112", "56", "112"],
        ["bias", "", "", "", "", "11", "22"],
        ["activations", "", "", "", "", "24", ""],
        ["total", "112", "112", "112", "112", "91", "134"],
    ]


@pytest.fixture
def net(write) -> str:
    from test_cli_options import NET

    return write("tiny.yaml", NET)
