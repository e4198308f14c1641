"""Sweeps (--sweep NAME=A..B[:STEPS]) and their SVG plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from layercalc import api
from layercalc.errors import UsageError
from layercalc.render.plot import sweep_svg, sweep_text
from layercalc.sweep import parse, points, run

SVG = "{http://www.w3.org/2000/svg}"


def test_points_even_or_geometric() -> None:
    assert points(1, 8, 8) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert points(128, 32768, 9) == (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)  # 2.4 decades: ratios
    assert points(5, 7, 8) == (5, 6, 7)  # repeats dropped


@pytest.mark.parametrize("text, message", [
    ("T=10", "NAME=A..B"), ("depth=1..4", "'depth' is not one of T, batch, side"), ("T=9..3", "1 <= A <= B"),
    ("T=1..9:1", "2 to 10000 steps"), ("T=1..99999:10001", "2 to 10000 steps"), ("batch=0..4", "1 <= A <= B"),
])
def test_bad_sweeps(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(text)


def test_resnet18_by_image_side() -> None:
    data = run(api.load("configs/resnet18.yaml"), parse("side=32..224:7"))
    assert data["values"] == [32, 64, 96, 128, 160, 192, 224]
    assert set(data["series"]["params"]) == {11_689_512}  # torchvision's resnet18, at any size
    assert data["series"]["macs"][-1] == 1_814_073_344  # torchvision's published 1.81 GMACs at 224
    with pytest.raises(UsageError, match="--sweep side=2: "):  # LeNet's 5×5 kernel outgrows a 2×2 image
        run(api.load("configs/lenet5.yaml"), parse("side=2..28:2"))


def test_plot_is_svg_with_labelled_axes_and_log_scales() -> None:
    data = run(api.load("configs/llama3_8b.yaml"), parse("T=128..32768:9"))
    root = ET.fromstring(sweep_svg(data))
    assert root.tag == SVG + "svg"
    assert len(root.findall(f"{SVG}polyline")) == 3
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "sequence length T (tokens) (log)" in texts  # 128..32768 spans more than two decades
    assert "MACs (multiply-accumulates) (log)" in texts
    assert "parameters (count)" in texts  # constant: a linear axis
    assert any(t.startswith("memory (bytes") for t in texts)


def test_same_series_as_columns() -> None:
    data = run(api.load("configs/mnist_mlp.yaml"), parse("batch=1..4:4"))
    lines = sweep_text("tsv", data).splitlines()
    assert lines[0] == "batch\tparams\tmacs\tmemory_bytes"
    # 784·512 + 512·256 + 256·10 = 535,040 MACs a sample
    assert [line.split("\t")[2] for line in lines[1:]] == [str(535_040 * b) for b in (1, 2, 3, 4)]


def test_command_line_sweep_and_plot(cli, tmp_path) -> None:
    run = cli("flops", "configs/gpt2.yaml", "--sweep", "T=16..1024:64", "-f", "tsv")
    assert run.status == 0 and len(run.out.splitlines()) == 1 + 64
    svg = tmp_path / "r.svg"
    run = cli("summary", "configs/resnet18.yaml", "--sweep", "side=32..224:7", "--plot", str(svg), "-f", "csv")
    assert run.status == 0 and ET.parse(svg).getroot().tag == SVG + "svg"
    assert run.out.splitlines()[-1] == "224,11689512,1814073344," + run.out.splitlines()[-1].split(",")[-1]


@pytest.mark.parametrize("args, message", [
    (["--plot", "x.svg"], "--plot draws a sweep"),
    (["--sweep", "side=32..64", "--plot", "/nonexistent/dir/x.svg"], "cannot write /nonexistent/dir/x.svg"),
    (["--sweep", "side=32..64", "--depth", "1"], "does not combine with --depth"),
    (["--sweep", "width=1..4"], "'width' is not one of T, batch, side"),
])
def test_command_line_sweep_refusals(cli, args: list[str], message: str) -> None:
    run = cli("summary", "configs/resnet18.yaml", *args)
    assert run.status == 2 and run.out == "" and run.err.count("\n") == 1 and message in run.err, run.err
