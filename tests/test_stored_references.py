"""layercalc against figures recorded from the real tools (tests/reference/record.py), so a first
run without torch still checks every convention, the training cost, activation memory and every
layer's NumPy forward/backward. With torch installed, each stored figure is re-checked live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from layercalc import analyse
from layercalc.conventions import Costing, training
from layercalc.verify.execution import backward, forward
from layercalc.verify import Options, plan
from reference.record import TRAINING_CONFIGS, case_key, cases, forward_backward_runs

HERE = Path(__file__).resolve().parent
FIGURES = json.loads((HERE / "reference" / "figures.json").read_text())
ARRAYS = np.load(HERE / "reference" / "layers.npz")
CONFIGS = HERE.parent / "configs"
TOOLS = ("torch", "fvcore", "thop", "ptflops", "torchinfo")
# float64 on both sides; 1e-7 because torch's hardsigmoid/hardswish use a float32 1/6 constant
TOL = {"rtol": 1e-7, "atol": 1e-9}
# Live torch against arrays torch recorded on another CPU: the same float64 sums, reduced in another
# order by that CPU's kernels (MKL, SIMD width, vectorised randn). Reordering a sum of n terms moves it
# by at most n·eps of the terms' magnitude; the largest sum here has under 10,000 terms (a conv's
# c_in·k·k or a linear's fan-in, times the batch for a weight gradient), so 10,000 · 2.2e-16 ≈ 2e-12,
# taken as 1e-11 of the array's largest magnitude. A wrong formula misses by many orders more.
LIVE_RTOL = 1e-11


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


live = pytest.mark.skipif(not _has_torch(), reason="re-checking stored figures needs torch and the peer tools")


def ours(config: dict[str, Any], convention: str) -> int | None:
    return Costing(analyse(config), convention).total()


def test_meta_names_the_command_and_the_tool_versions() -> None:
    meta = FIGURES["meta"]
    assert meta["command"] == "python tests/reference/record.py"
    assert set(meta["versions"]) >= {"python", "torch", "torchinfo", "fvcore", "thop", "ptflops"}


@pytest.mark.parametrize("key", sorted(FIGURES["conventions"]), ids=lambda k: k[:60])
def test_each_convention_matches_the_stored_tool_total(key: str) -> None:
    case = FIGURES["conventions"][key]
    counted = {t: v for t, v in case["totals"].items() if isinstance(v, int)}
    assert {t: (ours(case["config"], t) or 0) for t in counted} == counted


def test_resnet50_reconciliation() -> None:
    """The published figures: each tool's ResNet-50 total at 224x224, batch 1 (no torch needed)."""
    config = yaml.safe_load((CONFIGS / "resnet50.yaml").read_text())
    expected = {"torchinfo": 4_089_238_376, "fvcore": 4_111_512_576, "thop": 4_133_742_592,
                "ptflops": 4_132_436_968, "torch": 8_178_368_512 // 2, "layercalc": 4_089_184_256}
    assert {c: ours(config, c) for c in expected} == expected


@pytest.mark.parametrize("key", sorted(FIGURES["training"]), ids=lambda k: k[:60])
def test_training_flops_match_stored_flopcountermode(key: str) -> None:
    case = FIGURES["training"][key]
    if not isinstance(case["training_flops"], int):
        pytest.skip(str(case["training_flops"]))
    assert training(analyse(case["config"]), "torch")["training_flops"] == case["training_flops"]


def test_training_cases_cover_the_named_configs() -> None:
    assert {f"config:{n}" for n in TRAINING_CONFIGS} <= set(FIGURES["training"])


@pytest.mark.parametrize("key", sorted(FIGURES["activations"]), ids=lambda k: k[:60])
def test_activation_bytes_are_every_created_tensor(key: str) -> None:
    """Every layer's output and every residual add's and concat's result, as forward hooks see them."""
    case = FIGURES["activations"][key]
    report = analyse(case["config"])
    assert report.total["activation_bytes"] == case["elements"] * report.dtype_bytes


def test_resnet18_activation_memory() -> None:
    # the figure with the residual adds' outputs counted (without them: 29,912,992)
    assert analyse(str(CONFIGS / "resnet18.yaml"), batch=1).total["activation_bytes"] == 32_923_552


STORED_LAYERS = sorted({k.rsplit("|", 1)[0] for k in ARRAYS.files})


@pytest.mark.parametrize("key", STORED_LAYERS, ids=lambda k: k[:60])
def test_numpy_forward_backward_match_stored_torch(key: str) -> None:
    entry, x_shape = json.loads(key)
    config = {"input": x_shape[1:], "batch": x_shape[0], "layers": [entry]}
    root, _ = plan(analyse(config), Options(seed=0))
    ours_params = root.all_params()
    stored = [ARRAYS[f"{key}|param{j}"] for j in range(len(ours_params)) if f"{key}|param{j}" in ARRAYS.files]
    assert len(stored) == len(ours_params) and f"{key}|param{len(ours_params)}" not in ARRAYS.files
    for (owner, name, arr), value in zip(ours_params, stored):
        assert arr.shape == value.shape, name
        owner.params[name] = value.copy()
    y, cache = forward(root, ARRAYS[f"{key}|x"].copy())
    np.testing.assert_allclose(y, ARRAYS[f"{key}|y"], **TOL)
    grads: dict = {}
    dx = backward(root, ARRAYS[f"{key}|dy"].copy(), cache, grads)
    np.testing.assert_allclose(dx, ARRAYS[f"{key}|dx"], **TOL)
    for j, (owner, name, _) in enumerate(ours_params):
        np.testing.assert_allclose(grads[owner][name], ARRAYS[f"{key}|grad{j}"], **TOL, err_msg=name)


def test_every_small_hand_computed_row_has_stored_forward_backward() -> None:
    missing = [case_key(e, x) for e, x in cases() if forward_backward_runs(e, x) and case_key(e, x) not in STORED_LAYERS]
    assert not missing, f"no stored torch forward/backward for {missing}: run python tests/reference/record.py"


# -- with torch: the stored figures are what the live tools say ------------------------------------


@live
@pytest.mark.parametrize("key", sorted(k for k in FIGURES["conventions"] if not k.startswith("config:")), ids=lambda k: k[:60])
def test_stored_tool_totals_are_the_live_tools(key: str) -> None:
    import peer_tools  # the shipped configs are re-checked in test_conventions.py, next to their live run

    case = FIGURES["conventions"][key]
    for tool, value in case["totals"].items():
        if isinstance(value, int):
            assert peer_tools.tool_total(tool, case["config"]) == value, tool


@live
@pytest.mark.parametrize("key", sorted(FIGURES["activations"]), ids=lambda k: k[:60])
def test_stored_activation_elements_are_live(key: str) -> None:
    import peer_tools

    case = FIGURES["activations"][key]
    assert peer_tools.activation_elements(case["config"]) == case["elements"]


@live
@pytest.mark.parametrize("key", sorted(k for k in FIGURES["training"] if not k.startswith("config:")), ids=lambda k: k[:60])
def test_stored_training_flops_are_live(key: str) -> None:
    import peer_tools

    case = FIGURES["training"][key]
    if isinstance(case["training_flops"], int):
        assert peer_tools.training_flops(case["config"]) == case["training_flops"]


@live
@pytest.mark.parametrize("key", STORED_LAYERS[::4], ids=lambda k: k[:60])
def test_stored_forward_backward_is_live_torch(key: str) -> None:
    """A sample (every fourth row) re-run under torch autograd with the stored seed."""
    import peer_tools

    entry, x_shape = json.loads(key)
    config = {"input": x_shape[1:], "batch": x_shape[0], "layers": [entry]}
    ref = peer_tools.layer_reference(config, seed=int(ARRAYS[f"{key}|seed"]))
    for name in ("x", "dy", "y", "dx"):
        stored = ARRAYS[f"{key}|{name}"]
        np.testing.assert_allclose(ref[name], stored, rtol=LIVE_RTOL, atol=LIVE_RTOL * np.abs(stored).max(initial=1.0),
                                   err_msg=name)


@pytest.mark.parametrize("key", STORED_LAYERS, ids=lambda k: k[:60])
def test_float32_arrays_stay_float32(key: str) -> None:
    """A float32 run must compute in float32: a float64 constant or cast in a forward or backward would
    silently upcast every gradient behind it (verify --dtype float32 then checks float64 arithmetic)."""
    entry, x_shape = json.loads(key)
    config = {"input": x_shape[1:], "batch": x_shape[0], "layers": [entry]}
    root, _ = plan(analyse(config), Options(seed=0))
    ours_params = root.all_params()
    for j, (owner, name, arr) in enumerate(ours_params):
        owner.params[name] = ARRAYS[f"{key}|param{j}"].astype(arr.dtype if arr.dtype.kind == "i" else np.float32)
    x = ARRAYS[f"{key}|x"]
    x = x if x.dtype.kind == "i" else x.astype(np.float32)  # token ids stay integers
    y, cache = forward(root, x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ARRAYS[f"{key}|y"], rtol=2e-3, atol=2e-4)
    grads: dict = {}
    dx = backward(root, ARRAYS[f"{key}|dy"].astype(np.float32), cache, grads)
    if x.dtype.kind != "i":
        assert dx.dtype == np.float32
        np.testing.assert_allclose(dx, ARRAYS[f"{key}|dx"], rtol=2e-3, atol=2e-4)
    for j, (owner, name, _) in enumerate(ours_params):
        assert grads[owner][name].dtype == np.float32, name
