"""What the calculating path loads: `params CONFIG --total` answers without PyYAML, json, the
command-line framework, NumPy, or the standard modules only other paths use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layercalc.layers import FAMILIES as CATALOG_FAMILIES

ROOT = Path(__file__).resolve().parent.parent
# none of these is needed to read a plain config and add up its parameters
NOT_LOADED = ("yaml", "json", "typer", "click", "rich", "numpy", "fractions", "copy", "decimal", "difflib", "signal")


def imported(*args: str) -> tuple[str, set[str]]:
    """(stdout, every module imported) of `python -X importtime -m layercalc args` run in the repository."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "layercalc", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc.stdout, names


@pytest.mark.parametrize("config, total", [
    ("configs/resnet50.yaml", "25557032"),  # torchvision's published resnet50 parameter count
    ("configs/vit_b_16.yaml", "86567656"),  # torchvision's published vit_b_16 parameter count
])
def test_total_of_a_shipped_config_loads_none_of_the_heavy_modules(config: str, total: str) -> None:
    out, names = imported("params", config, "--total")
    assert out.strip() == total
    assert "layercalc.document" in names  # the probe sees layercalc's own imports
    loaded = sorted(m for m in names if m.split(".")[0] in NOT_LOADED)
    assert loaded == []


def test_yaml_outside_the_plain_subset_still_reads_with_pyyaml(tmp_path: Path) -> None:
    config = tmp_path / "net.yaml"
    # by hand: the alias repeats the arguments: 4 -> 3 (4 * 3 + 3 = 15), then 3 -> 3 (3 * 3 + 3 = 12): 27
    config.write_text("input: [4]\nlayers:\n  - linear: &a {out_features: 3}\n  - relu\n  - linear: *a\n")
    out, names = imported("params", str(config), "--total")
    assert out.strip() == "27"
    assert "yaml" in names


def test_json_config_total_loads_json_but_not_yaml(tmp_path: Path) -> None:
    config = tmp_path / "net.json"
    # by hand: 4 -> 3 with bias is 4 * 3 + 3 = 15 parameters
    config.write_text('{"input": [4], "layers": [{"linear": {"out_features": 3}}]}\n')
    out, names = imported("params", str(config), "--total")
    assert out.strip() == "15"
    assert "json.decoder" in names and "yaml" not in names


# Runs a command in-process as `python -m layercalc` would, then prints every module loaded (the
# catalog imports a layer family with importlib, which -X importtime does not report) and every
# compile() call outside the import system's own (the first one in a process builds the classes of
# the ast module, a start-up cost of its own).
PROBE = """
import builtins, sys
real = builtins.compile
compiled = []

def spy(source, filename, *args, **kwargs):
    if not sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
        compiled.append(repr(source)[:60])
    return real(source, filename, *args, **kwargs)

builtins.compile = spy
from layercalc.launch import main
try:
    main(sys.argv[1:])
finally:
    sys.stderr.write("".join(f"module {m}\\n" for m in sys.modules))
    sys.stderr.write("".join(f"compile {c}\\n" for c in compiled))
"""
# the layer modules every config needs: the catalog's base and vocabulary
CORE = {"base", "cost", "counting", "geometry", "numerics", "peers", "schema"}
FAMILIES = set(CATALOG_FAMILIES)  # the catalog's own table (test_layer_checklist checks it against the modules)


def probed(*args: str) -> tuple[str, set[str], list[str]]:
    """(stdout, modules loaded, compile() calls) of `layercalc args` run in the repository."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    modules = {line.split(" ", 1)[1] for line in lines if line.startswith("module ")}
    return proc.stdout, modules, [line for line in lines if line.startswith("compile ")]


def test_a_total_loads_only_the_layer_families_its_config_names() -> None:
    out, modules, _ = probed("params", "configs/resnet50.yaml", "--total")
    assert out.strip() == "25557032"  # torchvision's published resnet50 parameter count
    layers = {m.rsplit(".", 1)[1] for m in modules if m.startswith("layercalc.layers.")}
    assert layers <= CORE | FAMILIES, "a new layer module: a family row in layers/__init__.py, or CORE here"
    # resnet50.yaml's types: conv2d, batchnorm2d, relu, maxpool2d, adaptiveavgpool2d, residual,
    # sequential, flatten, linear
    assert layers - CORE == {"conv", "norm", "activation", "pool", "blocks", "reshape", "linear"}
    # nor anything only the other commands use: the command-line framework, the tables and
    # pictures, verify and its kernels, the Hugging Face reader
    assert not {m for m in modules if m.split(".")[0] in NOT_LOADED}
    assert not {m for m in modules if m.split(".")[:2] in (
        ["layercalc", "cli"], ["layercalc", "render"], ["layercalc", "verify"], ["layercalc", "kernels"], ["layercalc", "hf"])}


def test_a_transformer_total_loads_no_convolution_pooling_or_recurrent_family() -> None:
    out, modules, _ = probed("params", "configs/vit_b_16.yaml", "--total")
    assert out.strip() == "86567656"  # torchvision's published vit_b_16 parameter count
    layers = {m.rsplit(".", 1)[1] for m in modules if m.startswith("layercalc.layers.")}
    assert "attention" in layers and "tokens" in layers
    assert not layers & {"pool", "recurrent", "resampling", "window", "affine", "ssm", "experts"}


@pytest.mark.parametrize("config", ["configs/resnet50.yaml", "configs/vit_b_16.yaml"])
def test_a_total_never_calls_compile(config: str) -> None:
    """No compile() on the way (typing.NamedTuple compiles string annotations, so the modules whose
    NamedTuples load here evaluate their annotations instead of deferring them)."""
    _, _, compiled = probed("params", config, "--total")
    assert compiled == []
