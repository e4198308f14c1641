"""Shared fixtures: run the command line in-process and capture what a user would see."""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same generated cases every time (reproducible); locally each run explores new ones
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from layercalc.launch import main

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


@dataclass
class Run:
    """One command-line run: exit status, stdout and stderr."""

    status: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """cli('params', 'x.yaml', '--total', stdin='...') -> Run."""

    def run(*args: str, stdin: str | None = None) -> Run:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        with pytest.raises(SystemExit) as info:
            main(list(args))
        captured = capsys.readouterr()
        return Run(int(info.value.code or 0), captured.out, captured.err)

    return run


@pytest.fixture
def write(tmp_path: Path):
    """write('net.yaml', text) -> path of a file in a temporary folder."""

    def make(name: str, text: str | bytes) -> str:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return str(path)

    return make


@pytest.fixture
def second_entry_refused(cli, write):
    """second_entry_refused(input, first, layer) -> stderr of `summary` on a config of `first` then
    the bad `layer`, checked to be exit 2, no stdout and one line naming the file, line 4 and the layer."""

    def run(shape: str, first: str, layer: str) -> str:
        path = write("bad.yaml", f"input: {shape}\nlayers:\n  - {first}\n  - {layer}\n")
        result = cli("summary", path)
        assert result.status == 2 and result.out == ""
        kind = layer.split(":")[0]
        assert result.err.startswith(f"error: {path}:4: layers[1] ({kind} '{kind}1'): "), result.err
        assert result.err.count("\n") == 1
        return result.err

    return run
