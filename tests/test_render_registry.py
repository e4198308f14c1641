"""render.RENDERERS: every view in every format is one registered function, and the command line
writes through the same registry and the same api.render a notebook calls."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys

import pytest

from layercalc import api, render
from layercalc.errors import UsageError
from layercalc.render import FORMATS, RENDERERS, Page

# linear 4 -> 3: 4·3 weights + 3 biases = 15 params; batch 1: 12 MACs
SPECS = ["linear:out_features=3"]


def tiny() -> api.Report:
    return api.analyse(layers=SPECS, input=[4])


def test_every_view_has_every_format_and_each_resolves_to_a_renderer() -> None:
    # html only where a page is offered (the per-layer report, the plans, kconv's lecture); the rest everywhere
    with_html = {"layers", "serve", "train", "kconv"}
    for view, formats in RENDERERS.items():
        expected = FORMATS if view in with_html else tuple(f for f in FORMATS if f != "html")
        assert tuple(formats) == expected, view
        for fmt in formats:
            function = render.renderer(view, fmt)
            assert list(inspect.signature(function).parameters) == ["data", "page"], (view, fmt)


def test_the_text_formats_are_hand_checked() -> None:
    report = tiny()
    assert api.render(report, "csv", "params") == (
        "path,name,type,depth,params,trainable_params,buffers\n"
        "linear1,linear1,linear,0,15,15,0\n"
        "total,,,,15,15,0\n"
    )
    assert api.render(report, "tsv", "macs", by_type=True) == "type\tcount\tmacs\nlinear\t1\t12\ntotal\t1\t12\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_gets_the_text_render_returns(fmt: str) -> None:
    report = tiny()
    out = io.StringIO()
    assert api.render(report, fmt, "flops", width=100, file=out) == ""
    assert out.getvalue() == api.render(report, fmt, "flops", width=100)


def test_the_command_line_writes_through_the_registry(cli, monkeypatch) -> None:
    written = []

    def fake(data: dict, page: Page) -> None:
        written.append((page.format, page.command, data["total"]["params"]))
        page.file.write("via the registry\n")

    monkeypatch.setattr("layercalc.render.machine.write_layers", fake)
    run = cli("params", "-l", SPECS[0], "--input", "4", "--format", "csv")
    assert (run.status, run.out, written) == (0, "via the registry\n", [("csv", "params", 15)])


def test_the_machine_formats_never_load_rich() -> None:
    code = ("import sys; from layercalc import api\n"
            "r = api.analyse(layers=['linear:out_features=3'], input=[4])\n"
            "for f in ('json', 'csv', 'tsv', 'markdown'):\n"
            "    api.render(r, f, 'summary'); api.render(r, f, 'summary', by_type=True); api.render(r, f, compare=True)\n"
            "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_checks_in_a_machine_format_keep_stdout_to_the_rows() -> None:
    data = {"results": [{"path": "fc", "name": "fc", "type": "linear", "check": "dL/dx", "method": "exact",
                         "error": 0.0, "tolerance": 0.0, "passed": True, "note": ""}],
            "skipped": [{"path": "fc", "name": "fc", "type": "linear", "check": "dL/dW", "reason": "too large"}],
            "summary": "1 checks run, 1 skipped, 0 failed"}
    out, err = io.StringIO(), io.StringIO()
    render.write("checks", data, Page("csv", out, err=err, notes=("error: boom",)))
    assert out.getvalue() == ("path,name,type,check,method,error,tolerance,passed,note\n"
                              "fc,fc,linear,dL/dx,exact,0.0,0.0,True,\n")
    assert err.getvalue() == "error: boom\nskipped: fc dL/dW: too large\n1 checks run, 1 skipped, 0 failed\n"


def test_an_unknown_format_or_command_is_refused_with_a_near_miss() -> None:
    with pytest.raises(UsageError, match="unknown format 'tvs'.*tsv"):
        api.render(tiny(), "tvs")
    with pytest.raises(UsageError, match="unknown command 'param'.*params"):
        api.render(tiny(), "csv", "param")


def test_a_format_a_view_does_not_offer_is_one_line() -> None:
    from layercalc.errors import UsageError

    with pytest.raises(UsageError, match="--format html is not offered for the layer catalog; it writes table, json"):
        render.renderer("catalog", "html")
