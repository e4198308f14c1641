"""options.check_report_options: one check of which options go together, the command line's and
the Python API's, each naming the options as its caller spells them."""

from __future__ import annotations

import pytest

from layercalc import api
from layercalc.errors import UsageError
from layercalc.options import check_report_options, flag, keyword

CONFLICTS = [  # (options, the command line's message, the API's)
    ({"by_type": True, "depth": 1}, "--by-type gives one row per layer type; it does not combine with --depth",
     "by_type gives one row per layer type; it does not combine with depth"),
    ({"compare": True, "convention": "torch", "training": True},  # the first conflict is the one named
     "--compare shows every convention's forward pass; it does not combine with --convention",
     "compare shows every convention's forward pass; it does not combine with convention"),
    ({"optimizer": "sgd"}, "--optimizer goes with --training", "optimizer goes with training"),
    ({"training": True, "convention": "thop"}, "so use --convention layercalc, torch or causal with --training",
     "so use convention layercalc, torch or causal with training"),
    ({"depth": -1}, "--depth must be >= 0, got -1", "depth must be >= 0, got -1"),
    ({"batch": 0}, "--batch must be >= 1, got 0", "batch must be >= 1, got 0"),
    ({"compare": True, "columns": "params"}, "--compare shows every convention's forward pass; it does not combine with --columns",
     "compare shows every convention's forward pass; it does not combine with columns"),
]


@pytest.mark.parametrize("given, cli_message, api_message", CONFLICTS)
def test_a_conflict_is_named_in_the_callers_spelling(given: dict, cli_message: str, api_message: str) -> None:
    with pytest.raises(UsageError) as by_flag:
        check_report_options(flag, **given)
    with pytest.raises(UsageError) as by_keyword:
        check_report_options(keyword, **given)
    assert cli_message in str(by_flag.value)
    assert api_message in str(by_keyword.value)


@pytest.mark.parametrize("given", [
    {},
    {"training": True, "convention": "torch", "optimizer": "momentum"},
    {"by_type": True, "training": True},
    {"compare": True},
    {"depth": 0, "columns": ["params", "macs"]},
    {"total": True, "macs": True, "training": True},
])
def test_what_goes_together_passes(given: dict) -> None:
    check_report_options(flag, **given)


@pytest.mark.parametrize("args, message", [
    (["--macs"], "--macs goes with --total"),
    (["--by-type", "--columns", "params"], "--by-type gives one row per layer type; it does not combine with --columns"),
    (["--total", "--format", "csv"], "--total prints a bare integer; it does not combine with --format"),
    (["--columns", "backward_macs"], "--columns: backward_macs needs --training"),
])
def test_the_command_line_refuses_through_the_same_check(cli, args: list[str], message: str) -> None:
    run = cli("flops", "-l", "linear:out_features=3", "--input", "4", *args)
    assert (run.status, run.out) == (2, "")
    assert message in run.err


@pytest.mark.parametrize("call, message", [
    (lambda r: api.report_data(r, optimizer="sgd"), "optimizer goes with training"),
    (lambda r: api.report_data(r, depth=-1), "depth must be >= 0"),
    (lambda r: api.render(r, "csv", by_type=True, columns="params"), "by_type gives one row per layer type"),
    (lambda r: api.render(r, "table", compare=True, columns=["params"]), "compare shows every convention's"),
])
def test_the_api_refuses_what_it_used_to_ignore(call, message: str) -> None:
    report = api.analyse(layers=["linear:out_features=3"], input=[4])
    with pytest.raises(UsageError, match=message):
        call(report)
