"""The Python API as a notebook uses it: a Report's short repr, report.table() and print(report)
(the command line's own table, as text), and a keyword for every command-line option."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from layercalc import analyse, api, cli
from layercalc.errors import UsageError
from test_cli_options import NET  # batch 2, 4 -> 8 -> relu -> 3, float64: 67 params, 112 MACs (worked there)


@pytest.fixture
def net(write) -> str:
    return write("tiny.yaml", NET)


def test_repr_is_short_and_says_what_the_network_is(net: str) -> None:
    report = analyse(net)
    assert repr(report) == "<Report tiny: input 4, batch 2, 67 params, 112 MACs>"
    big = analyse(net, batch=1000, input=[16])  # 16·8 + 8 = 136 + 27 = 163 params; 1000·(16·8 + 8·3) = 152,000 MACs
    assert repr(big) == "<Report tiny: input 16, batch 1000, 163 params, 152,000 MACs>"


def test_table_is_the_command_lines_table(cli, monkeypatch, net: str) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    for command in ("summary", "params", "flops", "shapes"):
        printed = cli(command, net, "--format", "table").out
        assert analyse(net).table(width=100, command=command) == printed


@pytest.mark.parametrize("width", [60, 80, 120])
def test_table_fits_its_width_without_colour(net: str, width: int) -> None:
    text = analyse(net).table(width=width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "\x1b[" not in text  # plain text: no escape codes in a notebook or a log
    assert any("fc1" in line for line in lines) and any("Total params" in line and "67" in line for line in lines)


def test_print_report_prints_the_table(capsys, net: str) -> None:
    report = analyse(net)
    print(report)
    assert capsys.readouterr().out == report.table() + "\n"
    assert str(report) == report.table(width=100)


def test_table_takes_the_report_options(net: str) -> None:
    report = analyse(net)
    by_type = report.table(width=80, by_type=True)
    assert re.search(r"^ linear +2 ", by_type, re.M)  # fc1 and fc2
    training = report.table(width=100, training=True, optimizer="sgd")
    assert "Backward MACs" in training and "Training memory" in training


# -- a keyword for every command-line option -------------------------------------------------------

# options that choose how a result is printed, with the API that gives the same thing
PRINTING = {
    "total": "report_data(...)['total'][key] (or ['training'] with training)",
    "macs": "report_data(...)['total']['macs']",
    "trainable": "report_data(...)['total']['trainable_params'] (or analyse(...).total)",
    "plot": "render.plot.sweep_svg(api.sweep(...))",
}
# the command line's name -> the API's
RENAMED = {"config": "source", "layer": "layers", "sweep": "spec"}


def keywords() -> set[str]:
    found: set[str] = set()
    for fn in (api.analyse, api.load, api.report_data, api.render, api.sweep):
        found |= set(inspect.signature(fn).parameters)
    return found


def test_every_command_line_option_has_a_keyword() -> None:
    options = set(cli.COMMON_OPTIONS) | {o for own in cli.COMMAND_OPTIONS.values() for o in own}
    missing = [o for o in options if RENAMED.get(o, o) not in keywords() and o not in PRINTING]
    assert not missing, f"command-line options without an API keyword: {missing}"


def test_analyse_keywords(net: str) -> None:
    report = analyse(net, batch=3, input="5", dtype="float16")
    # 5 -> 8 -> 3: params 5·8 + 8 + 27 = 75; MACs 3·(5·8 + 8·3) = 192; params 75 · 2 bytes = 150
    assert (report.network.batch, report.network.input, report.network.dtype) == (3, (5,), "float16")
    assert (report.total["params"], report.total["macs"], report.total["param_bytes"]) == (75, 192, 150)
    inline = analyse(layers=["linear:out_features=8,name=fc1", "relu", "linear:out_features=3,name=fc2"],
                     input=[4], batch=2, dtype="float64")
    assert inline.total == analyse(net).total


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float128"}, "dtype must be one of"),
    ({"layers": ["relu"], "input": [4]}, "not both"),
])
def test_analyse_refuses_bad_keywords(net: str, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        analyse(net, **kwargs)


def test_report_data_keywords_match_the_command_line(cli, net: str) -> None:
    report = analyse(net)
    for args, kwargs in [
        (["--convention", "ptflops"], {"convention": "ptflops"}),
        (["--training", "--optimizer", "momentum"], {"training": True, "optimizer": "momentum"}),
        (["--by-type"], {"by_type": True}),
        (["--depth", "0"], {"depth": 0}),
    ]:
        printed = json.loads(cli("flops", net, *args, "--format", "json").out)
        assert api.report_data(report, **kwargs) == printed, args
        assert json.loads(api.render(report, "json", "flops", **kwargs)) == printed
    # the optimizer state: momentum keeps one tensor per parameter, sgd none: 67 params · 8 bytes = 536
    assert api.report_data(report, training=True, optimizer="momentum")["training"]["optimizer_bytes"] == 536
    assert api.report_data(report, training=True, optimizer="sgd")["training"]["optimizer_bytes"] == 0
    compared = json.loads(cli("flops", net, "--compare", "--format", "json").out)
    assert api.report_data(report, compare=True) == compared


def test_render_text_formats_match_the_command_line(cli, net: str) -> None:
    report = analyse(net)
    for fmt in ("csv", "tsv", "markdown"):
        assert api.render(report, fmt, "params") == cli("params", net, "--format", fmt).out
        assert api.render(report, fmt, "summary", by_type=True) == cli("summary", net, "--by-type", "--format", fmt).out


@pytest.mark.parametrize("kwargs, message", [
    ({"convention": "fvcor"}, "did you mean fvcore"),
    ({"training": True, "convention": "thop"}, "training"),
    ({"training": True, "optimizer": "adamw"}, "did you mean adam"),
    ({"compare": True, "training": True}, "compare"),
    ({"by_type": True, "depth": 1}, "by_type"),
])
def test_report_data_refuses_what_the_command_line_refuses(net: str, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        api.report_data(analyse(net), **kwargs)


@pytest.mark.parametrize("path, given", [
    ("configs/whisper_tiny.yaml", "decoder_input_ids=100"),
    ("configs/whisper_tiny.yaml", {"input_features": [80, 2000]}),
    ("configs/whisper_tiny.yaml", ["input_features=80x2000", "decoder_input_ids=64"]),
    ("configs/resnet18.yaml", "3x64x64"),
])
def test_a_loaded_network_takes_an_input_as_its_config_does(path: str, given: object) -> None:
    """load(network, input=...) overrides the inputs as load(path, input=...) and --input do."""
    again, fresh = api.load(api.load(path), input=given), api.load(path, input=given)
    assert (again.input, again.streams()) == (fresh.input, fresh.streams())
    assert api.analyse(again).total == api.analyse(fresh).total


@pytest.mark.parametrize("path, given, message", [
    ("configs/whisper_tiny.yaml", "80x2000", "this network has named inputs (input_features, decoder_input_ids)"),
    ("configs/whisper_tiny.yaml", "audio=80x2000", "the network has no input named 'audio'"),
    ("configs/resnet18.yaml", "image=3x64x64", "it has one unnamed input"),
])
def test_a_loaded_network_refuses_an_input_as_its_config_does(path: str, given: object, message: str) -> None:
    from layercalc.errors import SchemaError

    for source in (path, api.load(path)):
        with pytest.raises(SchemaError, match=re.escape(message)):
            api.load(source, input=given)
