"""`layercalc layers TYPE`: every type states its rules in words on its own class (the text the
command shows), in every format; each worked example's numbers are checked by hand for a few
types and against PyTorch and the real peer tools for every type."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from typing import Any

import pytest

from layercalc import analyse
from layercalc.api import describe, example_config, report_data
from layercalc.layers import REGISTRY
from layercalc.layers.peers import CONVENTIONS, PEERS

TYPES = sorted(REGISTRY)
FORMATS = ["table", "json", "csv", "tsv", "markdown"]


def rule_text(cls: type) -> str:
    return " ".join([cls.shape_rule, cls.params_rule, cls.buffers_rule, cls.macs_rule, *cls.peer_rules.values()])


@pytest.mark.parametrize("name", TYPES)
def test_every_type_states_its_rules(name: str) -> None:
    cls = REGISTRY[name]
    for what in ("shape_rule", "params_rule", "buffers_rule", "macs_rule"):
        assert getattr(cls, what).strip(), f"{name}.{what} is empty"
    assert set(cls.peer_rules) == set(PEERS), name
    assert all(text.strip() for text in cls.peer_rules.values()), name
    names = {a.name for a in cls.args}
    assert set(cls.inert_args) <= names, f"{name}: inert_args names no argument: {set(cls.inert_args) - names}"
    # every argument either appears in a rule or is declared as changing no shape or count
    text = rule_text(cls)
    unexplained = [a for a in names - set(cls.inert_args) if not re.search(rf"\b{a}\b", text)]
    assert not unexplained, f"{name}: no rule mentions {unexplained}"
    sample, args = cls.example
    assert sample, f"{name} has no worked example"
    assert set(args) <= names


# a different valid value for each argument some type declares inert (and for a planted bug, 'bias')
OTHER = {"eps": 1e-3, "momentum": 0.5, "p": 0.2, "dropout": 0.3, "inplace": True, "negative_slope": 0.2,
         "alpha": 0.5, "approximate": "tanh", "nonlinearity": "relu", "activation": "gelu",
         "layer_norm_eps": 1e-3, "norm_first": True, "count_include_pad": False, "padding_idx": 0,
         "rope_theta": 500.0, "partial_rotary_factor": 0.5, "align_corners": True, "bias": False,
         "beta": 2.0, "threshold": 10.0, "attention_dropout": 0.1}
# where the inert argument only applies with another setting, both sides of the comparison get it
SETTING = {"upsample": {"mode": "bilinear"}, "attention": {"rope": True}}
INERT = [(name, arg) for name in TYPES for arg in REGISTRY[name].inert_args]


def counts(config: dict[str, Any]) -> list[Any]:
    """Everything a count depends on: shapes, params, buffers, every convention's MACs, backward MACs."""
    report = analyse(config)
    out: list[Any] = [report.output_shape, report.total["params"], report.total["buffers"]]
    for convention in CONVENTIONS:
        out.append(report_data(report, 0, convention)["total"]["macs"])
    for convention in ("layercalc", "torch"):
        out.append(report_data(report, 0, convention, training=True)["training"]["training_macs"])
    return out


def with_args(config: dict[str, Any], name: str, args: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    entry = config["layers"][0]
    config["layers"][0] = {name: {**(entry[name] if isinstance(entry, dict) else {}), **args}}
    return config


@pytest.mark.parametrize("name, arg", INERT, ids=[f"{n}-{a}" for n, a in INERT])
def test_inert_arguments_change_no_count(name: str, arg: str) -> None:
    base = with_args(example_config(name), name, SETTING.get(name, {}))
    assert counts(with_args(base, name, {arg: OTHER[arg]})) == counts(base)


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_layers_type_in_every_format(cli, monkeypatch, name: str, fmt: str) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run = cli("layers", name.upper() if fmt == "csv" else name, "--format", fmt)  # type names ignore case
    assert run.status == 0, run.err
    assert run.err == ""
    cls = REGISTRY[name]
    if fmt == "json":
        data = json.loads(run.out)
        assert data["type"] == name
        assert [a["name"] for a in data["arguments"]] == [a.name for a in cls.args]
        # one source: the command shows the class's own words
        assert data["rules"]["shape"] == cls.shape_rule and data["rules"]["macs"] == cls.macs_rule
        assert data["conventions"] == {"layercalc": cls.macs_rule, **cls.peer_rules}
        assert set(data["example"]["conventions"]) == set(CONVENTIONS)
    elif fmt == "table":
        assert max(len(line) for line in run.out.splitlines()) <= 80
        for a in cls.args:
            assert a.name in run.out
        assert "Example" in run.out
    else:
        rows = parse(fmt, run.out)
        assert list(rows[0]) == ["section", "key", "value", "note"]
        facts = {(r["section"], r["key"]): r["value"] for r in rows}
        assert facts[("type", name)] == cls.summary
        assert facts[("rule", "params")] == cls.params_rule
        for a in cls.args:
            assert ("argument", a.name) in facts
        for tool in PEERS:
            assert facts[("convention", tool)] == cls.peer_rules[tool]


def parse(fmt: str, text: str) -> list[dict[str, str]]:
    if fmt == "markdown":
        lines = [re.split(r"(?<!\\) \| ", ln.strip()[2:-2]) for ln in text.splitlines()]
        header, body = lines[0], lines[2:]
        unescape = lambda c: c.replace("\\|", "|").replace("\\\\", "\\")  # noqa: E731
        return [dict(zip(header, map(unescape, r))) for r in body]
    return list(csv.DictReader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ","))


def test_an_unknown_type_is_refused_with_a_near_miss(cli) -> None:
    run = cli("layers", "conv2", "--format", "json")
    assert run.status == 2
    assert run.out == ""
    assert run.err.startswith("error: unknown layer type 'conv2' (did you mean conv2d?)")
    assert run.err.count("\n") == 1


def test_the_catalog_still_lists_every_type(cli) -> None:
    run = cli("layers", "--format", "json")
    assert run.status == 0
    assert [r["type"] for r in json.loads(run.out)] == list(REGISTRY)


# -- worked examples by hand ----------------------------------------------------------------------
# conv2d {out_channels 4, kernel_size 3, padding 1} on 1x3x8x8: output 1x4x8x8 (8 + 2 - 3 + 1 = 8)
#   params 4·3·3·3 + 4 = 112; MACs 4·8·8 outputs × 3·3·3 taps = 256 × 27 = 6,912
#   ptflops and torchinfo add the bias once per output: 6,912 + 256 = 7,168
# linear {out_features 3} on 1x4: params 4·3 + 3 = 15; MACs 3 outputs × 4 = 12; bias adds 3 -> 15
#   torchinfo: N·in·out + N·out = 12 + 3 = 15
# lstm {hidden_size 4} on 1x5x3 (T 5, F 3, G 4): params 16·3 + 16·4 + 2·16 = 48 + 64 + 32 = 144
#   MACs T·G·H·(F + H) = 5·16·7 = 560; biases 2·G·H·T = 2·16·5 = 160
#   thop 560 + 160 + (4 + 4)·4·5 = 880; ptflops 560 + 160 + 10·4·5 = 920; torchinfo 560 + 160 = 720
#   torch: the fused oneDNN kernel, not counted
# batchnorm1d on 1x4x6: params 2·4 = 8, buffers 2·4 + 1 = 9; 24 elements:
#   fvcore 2·24 = 48, thop 4·24 = 96, ptflops 2·24 = 48, torchinfo N·2·C = 8
# relu on 1x2x3: 6 elements; only ptflops: 6 in its hook + 6 in its F.relu patch = 12
HAND = {
    "conv2d": ([1, 4, 8, 8], 112, 0, 6912, {"torch": 6912, "fvcore": 6912, "thop": 6912, "ptflops": 7168, "torchinfo": 7168}),
    "linear": ([1, 3], 15, 0, 12, {"torch": 12, "fvcore": 12, "thop": 12, "ptflops": 15, "torchinfo": 15}),
    "lstm": ([1, 5, 4], 144, 0, 560, {"torch": None, "fvcore": None, "thop": 880, "ptflops": 920, "torchinfo": 720}),
    "batchnorm1d": ([1, 4, 6], 8, 9, 0, {"torch": None, "fvcore": 48, "thop": 96, "ptflops": 48, "torchinfo": 8}),
    "relu": ([1, 2, 3], 0, 0, 0, {"torch": None, "fvcore": None, "thop": None, "ptflops": 12, "torchinfo": None}),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_worked_examples_by_hand(name: str) -> None:
    shape, params, buffers, macs, tools = HAND[name]
    ex = describe(name)["example"]
    assert (ex["output_shape"], ex["params"], ex["buffers"], ex["macs"], ex["flops"]) == (shape, params, buffers, macs, 2 * macs)
    assert ex["conventions"] == {"layercalc": macs, **tools}


# -- worked examples against PyTorch and the tools themselves --------------------------------------


@pytest.mark.parametrize("name", TYPES)
def test_worked_examples_match_pytorch_and_each_tool(name: str) -> None:
    pytest.importorskip("torch")
    torch_models = pytest.importorskip("torch_models")
    from peer_tools import tool_total

    config = example_config(name)
    ex = describe(name)["example"]
    model, shape = torch_models.build(config)
    truth = torch_models.counts(model, shape, fused=False, explicit=True)
    assert tuple(ex["output_shape"]) == truth["output_shape"]
    assert (ex["params"], ex["buffers"], ex["macs"]) == (truth["params"], truth["buffers"], truth["macs"])
    for tool in PEERS:
        assert (ex["conventions"][tool] or 0) == tool_total(tool, config), tool
