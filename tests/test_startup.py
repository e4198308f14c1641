"""What the calculating path loads: `params CONFIG --total` answers without PyYAML, json, the
command-line framework, NumPy, or the standard modules only other paths use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# none of these is needed to read a plain config and add up its parameters
NOT_LOADED = ("yaml", "json", "typer", "click", "rich", "numpy", "fractions", "copy", "decimal", "difflib")


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
