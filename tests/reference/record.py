"""Record the reference figures the torch-free tests read: python tests/reference/record.py

Needs torch and the peer tools (pip install -e ".[test,peers]" torch). Every figure comes from the
real tool or from PyTorch itself, never from layercalc:
- figures.json: each peer tool's MAC total (FlopCounterMode / 2 for 'torch') for every shipped
  config and every hand-computed layer row as a one-layer network; FlopCounterMode's FLOPs of a
  forward and backward pass; the elements of every tensor a forward pass creates (forward hooks);
- layers.npz: float64 forward and backward of every hand-computed layer row under torch autograd.
The command and the tool versions are written beside the data ("meta"); when torch is installed the
tests re-check every stored figure against the live tools.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
COMMAND = "python tests/reference/record.py"
TRAINING_CONFIGS = ("resnet18", "mobilenet_v2", "unet_small", "conv1d_net", "mnist_mlp")


def case_key(entry: Any, x_shape: tuple[int, ...]) -> str:
    """A stable name for a hand-computed row: its entry and input shape as JSON."""
    return json.dumps([entry, list(x_shape)], sort_keys=True)


def case_config(entry: Any, x_shape: tuple[int, ...]) -> dict[str, Any]:
    """A hand-computed row as a one-layer network."""
    return {"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]}


TOOL_TOKENS = 32  # the peer tools run a language model on this many tokens (the same model, quicker)
FITS = 500_000_000  # params: a bigger float32 torch model does not fit this machine's memory


def shipped(name: str, batch: int | None = None) -> dict[str, Any]:
    """A shipped config, with the batch the tests use for the peer tools (small inputs: 2, else 1)
    and, for the tools, a language model's sequence shortened to TOOL_TOKENS."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    config["batch"] = batch if batch is not None else (2 if config["input"][-1] <= 64 else 1)
    if batch is None and "embedding" in config["layers"][0] and config["input"][0] > TOOL_TOKENS:
        config["input"] = [TOOL_TOKENS]
    shape = config["input"]
    if batch is None and len(shape) == 4 and shape[1] * shape[2] * shape[3] > 100_000:
        config["input"] = [shape[0], 4, 32, 32]  # a video net on a 4x32x32 clip: the same formulas, cheaper passes
    return config


def fits(config: dict[str, Any]) -> bool:
    """Whether the config's torch model fits this machine in float32 (Llama 7B/8B do not)."""
    from layercalc import analyse

    return analyse(config).total["params"] <= FITS


def cases() -> list[tuple[Any, tuple[int, ...]]]:
    """Every hand-computed row as (entry, input shape): the CASES of tests/test_layers.py and of
    every family's test file (any tests/test_*.py with a top-level CASES list of the same form)."""
    import importlib
    import re

    out = []
    for path in sorted(TESTS.glob("test_*.py")):
        if not re.search(r"^CASES\b", path.read_text(), re.M):
            continue
        try:
            module = importlib.import_module(path.stem)
        except BaseException as exc:  # a family file that needs torch at import: its rows are not torch-free
            if type(exc).__name__ == "Skipped":
                continue
            raise
        rows = [c for c in module.CASES if isinstance(c, tuple) and len(c) >= 6 and isinstance(c[0], (str, dict))]
        out += [(c[0], tuple(c[1])) for c in rows]  # (entry, input, output, params, buffers, macs)
    return out


def case_type(entry: Any) -> str:
    """The layer type of a config entry (bare string or one-key mapping), lower case."""
    if isinstance(entry, str):
        return entry.lower()
    return next(k for k in entry if k not in ("name", "repeat", "trainable")).lower()


MAX_STORED_ELEMENTS = 4096  # larger rows are checked live only (keeps layers.npz small)


def forward_backward_runs(entry: Any, x_shape: tuple[int, ...]) -> bool:
    """Whether a row's forward/backward is stored: small enough, and not batch statistics of one value per channel."""
    from layercalc.layers import numel

    if numel(x_shape) > MAX_STORED_ELEMENTS:
        return False
    from layercalc import analyse

    if analyse(case_config(entry, x_shape)).entries[0].ids is not None:
        return False  # integer token ids have no gradient: verify and tests/test_sequence.py check these
    return not (x_shape[0] == 1 and len(x_shape) == 2 and any(k in str(entry) for k in ("batchnorm", "residual")))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "torchinfo", "fvcore", "thop", "ptflops"):
        out[dist] = metadata.version(dist)
    return out


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # a tool that refuses a model: recorded as null with the reason
        return {"refused": f"{type(exc).__name__}: {exc}"[:200]}


def record() -> None:
    import numpy as np

    import peer_tools

    configs = {name: shipped(Path(p).stem) for p in sorted((ROOT / "configs").glob("*.yaml")) for name in [Path(p).stem]}
    configs = {name: config for name, config in configs.items() if fits(config)}
    conventions: dict[str, Any] = {}
    for name, config in configs.items():
        conventions[f"config:{name}"] = {"config": config, "totals": {t: _try(peer_tools.tool_total, t, config) for t in peer_tools.TOOLS}}
    training: dict[str, Any] = {}
    for name in TRAINING_CONFIGS:
        config = shipped(name, batch=2)
        training[f"config:{name}"] = {"config": config, "training_flops": peer_tools.training_flops(config)}
    activations: dict[str, Any] = {}
    for name in sorted(configs):
        config = shipped(name, batch=1)
        activations[f"config:{name}"] = {"config": config, "elements": peer_tools.activation_elements(config)}
    arrays: dict[str, Any] = {}
    for i, (entry, x_shape) in enumerate(cases()):
        key, config = case_key(entry, x_shape), case_config(entry, x_shape)
        conventions[key] = {"config": config, "totals": {t: _try(peer_tools.tool_total, t, config) for t in peer_tools.TOOLS}}
        training[key] = {"config": config, "training_flops": _try(peer_tools.training_flops, config)}
        activations[key] = {"config": config, "elements": peer_tools.activation_elements(config)}
        if forward_backward_runs(entry, x_shape):
            ref = peer_tools.layer_reference(config, seed=i)
            arrays[f"{key}|x"], arrays[f"{key}|dy"], arrays[f"{key}|y"], arrays[f"{key}|dx"] = ref["x"], ref["dy"], ref["y"], ref["dx"]
            for j, (p, g) in enumerate(zip(ref["params"], ref["grads"])):
                arrays[f"{key}|param{j}"], arrays[f"{key}|grad{j}"] = p, g
            arrays[f"{key}|seed"] = np.array(i)
    meta = {"command": COMMAND, "versions": versions()}
    data = {"meta": meta, "conventions": conventions, "training": training, "activations": activations}
    (HERE / "figures.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(HERE / "layers.npz", **arrays)
    print(f"recorded {len(conventions)} convention cases, {len(training)} training, {len(activations)} activation,"
          f" {sum(1 for k in arrays if k.endswith('|x'))} forward/backward cases with {meta['versions']}")


if __name__ == "__main__":
    sys.path[:0] = [str(TESTS), str(ROOT)]
    record()
