"""Record the reference figures the torch-free tests read: python tests/reference/record.py

Needs torch and the peer tools (pip install -e ".[test,peers]" torch). Every figure comes from the
real tool or from PyTorch itself, never from layercalc:
- figures.json: each peer tool's MAC total (FlopCounterMode / 2 for 'torch') for every shipped
  config and every hand-computed layer row as a one-layer network; FlopCounterMode's FLOPs of a
  forward and backward pass; the elements of every tensor a forward pass creates (forward hooks);
- layers.npz: float64 forward and backward of every hand-computed layer row under torch autograd.
The command and the tool versions are written beside the data ("meta"); when torch is installed the
tests re-check every stored figure against the live tools.

`python tests/reference/record.py --missing` records only the shipped configs and hand-computed
rows that have no figures yet, keeping every stored one (a new layer type or config, recorded
without touching the rest). `python tests/reference/record.py --frozen` records only the fine-tuning cases (frozen_configs():
FlopCounterMode with requires_grad_(False) on the frozen entries) into the existing figures.json.
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
# configs whose torch model runs a Python loop over every position of every layer (transformers'
# Mamba without CUDA kernels): their activations are recorded at TOOL_TOKENS, not in minutes at 2048
SCAN_LOOPS = ("mamba_130m",)
FITS = 500_000_000  # params: a bigger float32 torch model does not fit this machine's memory


def single_input(name: str) -> bool:
    """Whether a shipped config reads one input (an encoder-decoder names several)."""
    import yaml

    return not isinstance(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["input"], dict)


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


def frozen_configs() -> dict[str, dict[str, Any]]:
    """Fine-tuning set-ups: `trainable: false` on some entries (a frozen backbone under a trainable head,
    a frozen middle, a frozen first layer), each family once; recorded under "training" as frozen:NAME."""
    import copy

    def freeze(entries: list[Any], *indices: int) -> list[Any]:
        out = copy.deepcopy(entries)
        for i in indices:
            out[i] = {out[i]: None} if isinstance(out[i], str) else out[i]
            out[i]["trainable"] = False
        return out

    resnet = shipped("resnet18", batch=2)
    mobile = shipped("mobilenet_v2", batch=2)
    off = False
    enc = {"nhead": 2, "dim_feedforward": 6}
    return {
        # every entry but the classifier frozen; then only the stem conv (the network's first layer)
        "resnet18_backbone": {**resnet, "layers": freeze(resnet["layers"], *range(len(resnet["layers"]) - 1))},
        "resnet18_stem": {**resnet, "layers": freeze(resnet["layers"], 0)},
        # depthwise (grouped) convs frozen in the middle: FlopCounterMode's grouped dL/dW rule no longer applies
        "mobilenet_v2_middle": {**mobile, "layers": freeze(mobile["layers"], 5, 6, 7)},
        "residual_parts": {"input": [3, 8, 8], "batch": 2, "layers": [
            {"conv2d": {"out_channels": 4, "kernel_size": 3, "padding": 1}, "trainable": off},
            {"residual": {"body": [{"conv2d": {"out_channels": 4, "kernel_size": 3, "padding": 1}, "trainable": off},
                                   "relu", {"conv2d": {"out_channels": 4, "kernel_size": 3, "padding": 1}}],
                          "shortcut": [{"conv2d": {"out_channels": 4, "kernel_size": 1}, "trainable": off}]}}]},
        "convtranspose_middle": {"input": [3, 8, 8], "batch": 2, "layers": [
            {"conv2d": {"out_channels": 4, "kernel_size": 3}},
            {"convtranspose2d": {"out_channels": 4, "kernel_size": 2, "stride": 2}, "trainable": off},
            {"conv2d": {"out_channels": 2, "kernel_size": 1}}]},
        "repeat_after_frozen": {"input": [8], "batch": 2, "layers": [
            {"linear": {"out_features": 8}, "trainable": off},
            {"sequential": {"layers": ["relu", {"linear": {"out_features": 8}}]}, "repeat": 150}]},
        "repeat_frozen_first": {"input": [8], "batch": 2, "layers": [
            {"linear": {"out_features": 8}, "repeat": 4, "trainable": off}, {"linear": {"out_features": 2}}]},
        "repeat_frozen_middle": {"input": [8], "batch": 2, "layers": [
            {"linear": {"out_features": 8}}, {"linear": {"out_features": 8}, "repeat": 3, "trainable": off},
            {"linear": {"out_features": 2}}]},
        # a frozen encoder layer first runs PyTorch's inference fast path (nothing needs a gradient)
        "encoder_first": {"input": [4, 8], "batch": 3, "layers": [
            {"transformerencoderlayer": enc, "trainable": off}, {"linear": {"out_features": 5}}]},
        "encoder_middle": {"input": [4, 8], "batch": 3, "layers": [
            {"linear": {"out_features": 8}}, {"transformerencoderlayer": enc, "trainable": off},
            {"linear": {"out_features": 5}}]},
        "multiheadattention_middle": {"input": [5, 8], "batch": 2, "layers": [
            {"linear": {"out_features": 8}}, {"multiheadattention": {"num_heads": 2}, "trainable": off},
            {"linear": {"out_features": 3}}]},
        "attention_first": {"input": [6, 16], "batch": 2, "layers": [
            {"attention": {"num_heads": 4, "num_kv_heads": 2, "rope": True}, "trainable": off}, "rmsnorm",
            {"attention": {"num_heads": 2, "head_dim": 6}}]},
        "lstm_first": {"input": [5, 3], "batch": 2, "layers": [
            {"lstm": {"hidden_size": 4, "proj_size": 2, "num_layers": 2}, "trainable": off},
            {"linear": {"out_features": 3}}]},
        "gru_middle": {"input": [5, 3], "batch": 2, "layers": [
            {"linear": {"out_features": 3}}, {"gru": {"hidden_size": 4, "num_layers": 2, "bidirectional": True},
                                              "trainable": off}, {"linear": {"out_features": 2}}]},
        # the output head shares the frozen embedding's weight: frozen too, counted once
        "tied_embedding": {"input": [6], "batch": 2, "layers": [
            {"embedding": {"num_embeddings": 11, "embedding_dim": 8}, "name": "emb", "trainable": off},
            "posembedding", {"transformerencoderlayer": enc},
            {"linear": {"out_features": 11, "tied_to": "emb"}, "trainable": off}]},
    }


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
            cases_list = importlib.import_module(path.stem).CASES
        except BaseException as exc:
            if type(exc).__name__ != "Skipped":
                raise
            # a family file that skips itself without torch part-way: its rows come before that line
            cases_list = _cases_before_skip(path)
        rows = [c for c in cases_list if isinstance(c, tuple) and len(c) >= 6 and isinstance(c[0], (str, dict))]
        out += [(c[0], tuple(c[1])) for c in rows]  # (entry, input, output, params, buffers, macs)
    return out


def _cases_before_skip(path: Path) -> list[Any]:
    """CASES of a test file whose module-level pytest.importorskip stops its import without torch."""
    lines = path.read_text().splitlines()
    stop = next(i for i, line in enumerate(lines) if not line.startswith((" ", "#")) and "importorskip" in line)
    namespace: dict[str, Any] = {"__name__": f"{path.stem}_rows", "__file__": str(path)}
    exec(compile("\n".join(lines[:stop]) + "\n", str(path), "exec"), namespace)
    return namespace.get("CASES", [])


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
    training.update(record_frozen())
    activations: dict[str, Any] = {}
    for name in sorted(configs):
        config = shipped(name, batch=1)
        if name in SCAN_LOOPS:
            config["input"] = [TOOL_TOKENS]
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


def record_frozen() -> dict[str, Any]:
    """FlopCounterMode's FLOPs of a forward and backward pass of each frozen_configs() model."""
    import peer_tools

    return {f"frozen:{name}": {"config": config, "training_flops": peer_tools.training_flops(config)}
            for name, config in frozen_configs().items()}


def update_frozen() -> None:
    """Record the frozen:* training figures alone into the existing figures.json (nothing else changes)."""
    path = HERE / "figures.json"
    data = json.loads(path.read_text())
    data["training"] = {k: v for k, v in data["training"].items() if not k.startswith("frozen:")}
    data["training"].update(record_frozen())
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(frozen_configs())} frozen training cases with {versions()}")


def _store_arrays(arrays: dict[str, Any], key: str, config: dict[str, Any], seed: int) -> None:
    """A hand-computed row's float64 torch forward and backward, under its key."""
    import numpy as np

    import peer_tools

    ref = peer_tools.layer_reference(config, seed=seed)
    for name in ("x", "dy", "y", "dx"):
        arrays[f"{key}|{name}"] = ref[name]
    for j, (p, g) in enumerate(zip(ref["params"], ref["grads"])):
        arrays[f"{key}|param{j}"], arrays[f"{key}|grad{j}"] = p, g
    arrays[f"{key}|seed"] = np.array(seed)


def update_missing() -> None:
    """Record the shipped configs and hand-computed rows that have no stored figures; keep the rest."""
    import numpy as np

    import peer_tools

    path = HERE / "figures.json"
    data = json.loads(path.read_text())
    with np.load(HERE / "layers.npz") as stored:
        arrays = {k: stored[k] for k in stored.files}
    conventions, activations = data["conventions"], data["activations"]
    added = []
    for p in sorted((ROOT / "configs").glob("*.yaml")):
        if not single_input(p.stem):
            continue  # the peer tools and the torch oracle take one input
        key, config = f"config:{p.stem}", shipped(p.stem)
        if key not in conventions and fits(config):
            totals = {t: _try(peer_tools.tool_total, t, config) for t in peer_tools.TOOLS}
            conventions[key] = {"config": config, "totals": totals}
            single = shipped(p.stem, batch=1)
            activations[key] = {"config": single, "elements": peer_tools.activation_elements(single)}
            added.append(key)
    for i, (entry, x_shape) in enumerate(cases()):
        key, config = case_key(entry, x_shape), case_config(entry, x_shape)
        if key in conventions:
            continue
        totals = {t: _try(peer_tools.tool_total, t, config) for t in peer_tools.TOOLS}
        conventions[key] = {"config": config, "totals": totals}
        data["training"][key] = {"config": config, "training_flops": _try(peer_tools.training_flops, config)}
        activations[key] = {"config": config, "elements": peer_tools.activation_elements(config)}
        if forward_backward_runs(entry, x_shape):
            _store_arrays(arrays, key, config, seed=i)
        added.append(key)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(HERE / "layers.npz", **arrays)
    print(f"recorded {len(added)} new cases with {versions()}")


def update_type(kind: str) -> None:
    """Record the hand-computed rows of one layer type alone into the existing figures.json and
    layers.npz (every other figure stays as recorded): a new type's figures without a full run."""
    import numpy as np

    import peer_tools

    path = HERE / "figures.json"
    data = json.loads(path.read_text())
    arrays = dict(np.load(HERE / "layers.npz"))
    for i, (entry, x_shape) in enumerate(cases()):
        if case_type(entry) != kind:
            continue
        key, config = case_key(entry, x_shape), case_config(entry, x_shape)
        data["conventions"][key] = {"config": config, "totals": {t: _try(peer_tools.tool_total, t, config) for t in peer_tools.TOOLS}}
        data["training"][key] = {"config": config, "training_flops": _try(peer_tools.training_flops, config)}
        data["activations"][key] = {"config": config, "elements": peer_tools.activation_elements(config)}
        if forward_backward_runs(entry, x_shape):
            _store_arrays(arrays, key, config, seed=i)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(HERE / "layers.npz", **arrays)
    print(f"recorded the {kind} rows with {versions()}")


if __name__ == "__main__":
    sys.path[:0] = [str(TESTS), str(ROOT)]
    if sys.argv[1:] == ["--missing"]:
        update_missing()
    elif sys.argv[1:] == ["--frozen"]:
        update_frozen()
    elif sys.argv[1:2] == ["--type"]:
        update_type(sys.argv[2])
    else:
        record()
