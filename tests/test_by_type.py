"""--by-type: one row per layer type (layers only: a block's numbers are its children's), whose
rows add up to the report's totals for every shipped config under every convention, with and
without --training; in every format; worked by hand on a small network with a repeated block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layercalc import analyse
from layercalc.api import report_data
from layercalc.layers.peers import CONVENTIONS, TRAINING_CONVENTIONS
from test_cli_options import parse

ROOT = Path(__file__).resolve().parent.parent
# every shipped config and example, frozen layers (examples/finetune.yaml) included
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))

# batch 2, input 4:
#   fc1    linear 4 -> 8    params 4·8 + 8 = 40    MACs 2·4·8 = 64
#   block  residual × 3: body linear 8 -> 8 (params 8·8 + 8 = 72, MACs 2·8·8 = 128) and relu
#   head   linear 8 -> 3    params 8·3 + 3 = 27    MACs 2·8·3 = 48
# by type: linear 5 layers, params 40 + 3·72 + 27 = 283, MACs 64 + 3·128 + 48 = 496
#          relu 3 layers; the residual blocks get no row of their own
# backward (autograd): fc1 reads the network input, so only dW: 64; every later linear computes
#   dW and dx: 3·2·128 + 2·48 = 768 + 96; linear backward 64 + 864 = 928, training 496 + 928 = 1,424
NET = """\
name: blocks
input: [4]
batch: 2
layers:
  - linear: {out_features: 8}
    name: fc1
  - residual:
      body:
        - linear: {out_features: 8}
        - relu
    repeat: 3
    name: block
  - linear: {out_features: 3}
    name: head
"""


@pytest.fixture
def net(write) -> str:
    return write("blocks.yaml", NET)


def test_by_type_by_hand(net: str) -> None:
    data = report_data(analyse(net), training=True, by_type=True)
    assert "layers" not in data
    assert data["types"] == [
        {"type": "linear", "count": 5, "params": 283, "buffers": 0, "macs": 496, "flops": 992,
         "backward_macs": 928, "training_macs": 1424},
        {"type": "relu", "count": 3, "params": 0, "buffers": 0, "macs": 0, "flops": 0,
         "backward_macs": 0, "training_macs": 0},
    ]


def test_a_long_repeat_counts_every_copy(write) -> None:
    # 1,000 copies of linear 8 -> 8 on batch 1: 1,000 layers, 72,000 params, 64,000 MACs;
    # folded into one row past the listed copies, the count still says 1,000
    path = write("long.yaml", "input: [8]\nlayers:\n  - linear: {out_features: 8}\n    repeat: 1000\n")
    (row,) = report_data(analyse(path), by_type=True)["types"]
    assert (row["type"], row["count"], row["params"], row["macs"]) == ("linear", 1000, 72_000, 64_000)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
@pytest.mark.parametrize("batch", [1, 3])
def test_rows_add_up_to_the_totals(path: Path, batch: int) -> None:
    report = analyse(path, batch=batch)
    for convention in CONVENTIONS:
        for training in (False, True) if convention in TRAINING_CONVENTIONS else (False,):
            data = report_data(report, convention=convention, training=training, by_type=True)
            rows, total = data["types"], data["total"]

            def added(key: str) -> int:
                return sum(r[key] or 0 for r in rows)

            where = (convention, training)
            assert added("params") == total["params"], where
            assert added("buffers") == total["buffers"], where
            assert added("macs") == (total["macs"] or 0), where
            assert added("flops") == (total["flops"] or 0), where
            if training:
                assert added("backward_macs") == data["training"]["backward_macs"], where
                assert added("training_macs") == data["training"]["training_macs"], where
            assert len({r["type"] for r in rows}) == len(rows)  # one row per type


@pytest.mark.parametrize("command", ["summary", "params", "flops"])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "markdown"])
def test_by_type_in_text_formats(cli, net: str, command: str, fmt: str) -> None:
    run = cli(command, net, "--by-type", "--format", fmt)
    assert run.status == 0, run.err
    rows = parse(fmt, run.out)
    assert [r["type"] for r in rows] == ["linear", "relu", "total"]
    assert rows[0]["count"] == "5" and rows[-1]["count"] == "8"
    if command != "flops":
        assert rows[0]["params"] == rows[-1]["params"] == "283"
    if command != "params":
        assert rows[0]["macs"] == rows[-1]["macs"] == "496"
        assert rows[0]["flops"] == "992"


def test_by_type_json_and_training(cli, net: str) -> None:
    run = cli("flops", net, "--by-type", "--training", "--format", "json")
    assert run.status == 0, run.err
    data = json.loads(run.out)
    assert [r["type"] for r in data["types"]] == ["linear", "relu"]
    assert data["types"][0]["backward_macs"] == data["training"]["backward_macs"] == 928
    csv_run = cli("flops", net, "--by-type", "--training", "--format", "csv")
    assert parse("csv", csv_run.out)[-1]["backward_macs"] == "928"


def test_by_type_under_a_peer_convention(cli, net: str) -> None:
    # ptflops adds the bias once per output, and divides its module-hook count by the batch:
    #   linear (496 MACs + biases 2·8 + 3·2·8 + 2·3 = 16 + 48 + 6 = 70) / 2 = 283
    #   relu: 3 copies of 2·8 = 16 elements, in its hook (48 / 2 = 24) and its F.relu patch (48, not divided): 72
    run = cli("flops", net, "--by-type", "--convention", "ptflops", "--format", "json")
    data = json.loads(run.out)
    assert [r["macs"] for r in data["types"]] == [283, 72]
    assert data["total"]["macs"] == 283 + 72


@pytest.mark.parametrize("command", ["summary", "params", "flops"])
def test_by_type_table_fits_80_columns(cli, monkeypatch, command: str) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run = cli(command, str(ROOT / "configs" / "gpt2.yaml"), "--by-type", "--training", "--convention", "torch",
              "--format", "table") if command != "params" else cli(command, str(ROOT / "configs" / "gpt2.yaml"),
                                                                    "--by-type", "--format", "table")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.split()[:1] == ["multiheadattention"] for line in lines)
    assert any(line.split()[:2] == ["total", "77"] for line in lines)


@pytest.mark.parametrize("extra", [["--total"], ["--depth", "1"]])
def test_by_type_refuses_options_about_rows(cli, net: str, extra: list[str]) -> None:
    run = cli("params", net, "--by-type", *extra)
    assert run.status == 2
    assert run.out == ""
    assert "--by-type" in run.err and extra[0] in run.err


def test_by_type_refuses_compare(cli, net: str) -> None:
    run = cli("flops", net, "--by-type", "--compare")
    assert run.status == 2 and run.out == "" and "--compare" in run.err
