"""layercalc against PyTorch on random configs and every shipped config: every leaf's output
shape, params, buffers and MACs (FlopCounterMode / 2). Where PyTorch refuses a config,
layercalc must refuse it too, with its own error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from layercalc import analyse
from layercalc.errors import ConfigError
from layercalc.layers import REGISTRY

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("torch_models")

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
ACTIVATIONS = ["relu", "relu6", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "identity"]


def leaf_shapes(report: Any) -> list[tuple[int, ...]]:
    return [tuple(r["output_shape"]) for r in report.rows() if r["type"] in REGISTRY and not REGISTRY[r["type"]].is_block()]


def compare(config: dict[str, Any]) -> None:
    """Both sides on one config: equal numbers, or both refuse it."""
    try:
        model, shape = torch_models.build(config)
        truth = torch_models.counts(model, shape)
        if 0 in truth["output_shape"] or any(0 in s for s in truth["leaf_shapes"]):
            raise ValueError("PyTorch returned an empty tensor")  # layercalc refuses these
    except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError):
        with pytest.raises(ConfigError):
            analyse(config)
        assume(False)
        return
    report = analyse(config)
    total = report.total
    assert (total["params"], total["buffers"], total["macs"]) == (truth["params"], truth["buffers"], truth["macs"])
    assert report.output_shape == truth["output_shape"]
    assert leaf_shapes(report) == truth["leaf_shapes"]


# -- random configs -----------------------------------------------------------------------------

small = st.integers(1, 3)


@st.composite
def conv_args(draw: Any, channels: int, rank: int) -> dict[str, Any]:
    groups = draw(st.sampled_from([g for g in (1, 2, 3, channels) if channels % g == 0]))
    args: dict[str, Any] = {"out_channels": groups * draw(st.integers(1, 3)), "kernel_size": draw(st.integers(1, 4))}
    if rank == 2 and draw(st.booleans()):
        args["kernel_size"] = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    stride = draw(st.integers(1, 3))
    padding = draw(st.one_of(st.integers(0, 2), st.just("same"), st.just("valid")))
    if padding != "same" and stride != 1:
        args["stride"] = stride
    args["padding"] = padding
    if draw(st.booleans()):
        args["dilation"] = draw(st.integers(1, 2))
    if groups != 1:
        args["groups"] = groups
    if draw(st.booleans()):
        args["bias"] = False
    return args


@st.composite
def spatial_layer(draw: Any, state: dict[str, Any], depth: int) -> Any:
    """One entry for (N, C, *spatial) input; state["c"] tracks the channel count."""
    rank, c = state["rank"], state["c"]
    d = "1d" if rank == 1 else "2d"
    kind = draw(st.sampled_from(
        ["conv", "conv", "pool", "avgpool", "adaptive", "norm", "act", "act", "dropout", "block"]
        + (["convt"] if rank == 2 else [])
    ))
    if kind == "conv":
        args = draw(conv_args(c, rank))
        state["c"] = args["out_channels"]
        return {f"conv{d}": args}
    if kind == "convt":
        groups = draw(st.sampled_from([g for g in (1, 2) if c % g == 0]))
        stride, dil = draw(small), draw(st.integers(1, 2))
        args = {"out_channels": groups * draw(small), "kernel_size": draw(st.integers(1, 3)), "stride": stride,
                "padding": draw(st.integers(0, 1)), "output_padding": draw(st.integers(0, max(stride, dil) - 1)),
                "dilation": dil, "groups": groups}
        state["c"] = args["out_channels"]
        return {"convtranspose2d": args}
    if kind == "pool":
        k = draw(st.integers(1, 3))
        # no dilation here: a dilated window lying wholly in the padding makes PyTorch's max-pool
        # backward write out of bounds (a crash, not an error); tests/test_layers.py covers dilation
        return {f"maxpool{d}": {"kernel_size": k, "stride": draw(st.one_of(st.none(), small)),
                                "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans())}}
    if kind == "avgpool":
        k = draw(st.integers(1, 3))
        return {f"avgpool{d}": {"kernel_size": k, "stride": draw(st.one_of(st.none(), small)),
                                "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans()),
                                "count_include_pad": draw(st.booleans())}}
    if kind == "adaptive":
        size: Any = draw(st.integers(1, 5))
        if rank == 2 and draw(st.booleans()):
            size = [draw(st.integers(1, 5)), draw(st.one_of(st.none(), st.integers(1, 5)))]
        return {f"adaptive{draw(st.sampled_from(['avg', 'max']))}pool{d}": {"output_size": size}}
    if kind == "norm":
        choice = draw(st.sampled_from(["batch", "group", "layer"]))
        if choice == "batch":
            return {f"batchnorm{d}": {"affine": draw(st.booleans())}}
        if choice == "group":
            return {"groupnorm": {"num_groups": draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))}}
        return {"layernorm": {"elementwise_affine": draw(st.booleans())}}
    if kind == "act":
        return draw(st.one_of(st.sampled_from(ACTIVATIONS), st.just({"leakyrelu": {"negative_slope": 0.2}}),
                              st.just({"softmax": {"dim": 1}})))
    if kind == "dropout":
        return draw(st.sampled_from(["dropout", {"dropout2d": {"p": 0.1}}] if rank == 2 else ["dropout"]))
    if depth >= 2:
        return "relu"
    block = draw(st.sampled_from(["residual", "concat", "sequential"]))
    if block == "residual":  # a shape-preserving body, and sometimes a 1x1 shortcut
        body = [{f"conv{d}": {"out_channels": c, "kernel_size": 3, "padding": 1}}, {f"batchnorm{d}": None}, "relu"]
        entry: dict[str, Any] = {"residual": {"body": body}}
        if draw(st.booleans()):
            entry["residual"]["shortcut"] = [{f"conv{d}": {"out_channels": c, "kernel_size": 1}}]
        if draw(st.booleans()):
            entry["repeat"] = draw(st.integers(2, 3))
        return entry
    if block == "concat":
        extra = draw(small)
        state["c"] = c + extra
        return {"concat": {"branches": [[], [{f"conv{d}": {"out_channels": extra, "kernel_size": 1}}, "relu"]]}}
    inner = dict(state)
    layers = draw(st.lists(spatial_layer(inner, depth + 1), min_size=1, max_size=3))
    state["c"] = inner["c"]
    return {"sequential": {"layers": layers}}


@st.composite
def random_config(draw: Any) -> dict[str, Any]:
    rank = draw(st.sampled_from([0, 1, 2, 2]))
    c = draw(st.integers(1, 6))
    if rank == 0:
        shape = [draw(st.integers(1, 12))]
    elif rank == 1:
        shape = [c, draw(st.integers(4, 40))]
    else:
        shape = [c, draw(st.integers(4, 24)), draw(st.integers(4, 24))]
    state = {"rank": rank, "c": c}
    layers: list[Any] = []
    if rank:
        layers = draw(st.lists(spatial_layer(state, 0), min_size=1, max_size=6))
        layers.append("flatten")
    layers += draw(st.lists(st.one_of(
        st.builds(lambda n, b: {"linear": {"out_features": n, "bias": b}}, st.integers(1, 9), st.booleans()),
        st.sampled_from(ACTIVATIONS + ["batchnorm1d", "layernorm", "dropout", "softmax"]),
    ), min_size=1, max_size=4))
    return {"input": shape, "batch": draw(st.integers(1, 3)), "layers": layers}


@st.composite
def sequence_layer(draw: Any, state: dict[str, Any], depth: int = 0) -> Any:
    """One entry for (N, T, E) sequences; state tracks [T, E] (which a transpose swaps)."""
    t, e = state["shape"]
    kind = draw(st.sampled_from(["pos", "cls", "rms", "layernorm", "linear", "glu", "act", "swap", "reshape", "block"]))
    if kind == "pos":  # sometimes too short a table: both sides must refuse it
        return {"posembedding": {"num_positions": draw(st.one_of(st.none(), st.integers(max(1, t - 1), t + 2)))}}
    if kind == "cls":
        state["shape"] = [t + 1, e]
        return "clstoken"
    if kind == "rms":
        return {"rmsnorm": {"elementwise_affine": draw(st.booleans()), "eps": draw(st.sampled_from([None, 1e-6]))}}
    if kind == "layernorm":
        return "layernorm"
    if kind == "linear":
        state["shape"] = [t, draw(st.integers(1, 8))]
        return {"linear": {"out_features": state["shape"][1], "bias": draw(st.booleans())}}
    if kind == "glu":  # SwiGLU's gate and up projections
        h = draw(st.integers(1, 8))
        state["shape"] = [t, h]
        gate = [{"linear": {"out_features": h, "bias": False}}, draw(st.sampled_from(["silu", "sigmoid", "gelu"]))]
        return {"multiply": {"branches": [gate, [{"linear": {"out_features": h, "bias": False}}]]}}
    if kind == "act":
        return draw(st.sampled_from(ACTIVATIONS))
    if kind == "swap":
        state["shape"] = [e, t]
        return draw(st.sampled_from([{"transpose": {"dim0": 1, "dim1": 2}}, {"transpose": {"dim0": -1, "dim1": -2}},
                                     {"permute": {"dims": [0, 2, 1]}}, {"permute": {"dims": [0, -1, 1]}}]))
    if kind == "reshape":
        return draw(st.sampled_from([{"reshape": {"shape": [-1, e]}}, {"reshape": {"shape": [t, e]}}]))
    if depth >= 1:
        return "identity"
    inner = {"shape": [t, e]}
    body = [draw(sequence_layer(inner, depth + 1)), {"linear": {"out_features": e}}]
    if inner["shape"][0] != t:  # keep the residual's shapes equal
        body = [{"rmsnorm": None}, {"linear": {"out_features": e}}]
    return {"residual": {"body": body}}


@st.composite
def sequence_config(draw: Any) -> dict[str, Any]:
    """Token ids -> embedding -> sequence layers -> a pooled or per-token output (maybe a tied head)."""
    t, v, e = draw(st.integers(1, 8)), draw(st.integers(2, 20)), draw(st.integers(1, 8))
    embedding: dict[str, Any] = {"num_embeddings": v, "embedding_dim": e}
    if draw(st.booleans()):
        embedding["padding_idx"] = draw(st.integers(-v, v - 1))
    state = {"shape": [t, e]}
    layers: list[Any] = [{"embedding": embedding, "name": "wte"}]
    layers += draw(st.lists(sequence_layer(state), min_size=0, max_size=5))
    t, e2 = state["shape"]
    end = draw(st.sampled_from(["mean", "select", "flatten", "none"]))
    if end == "mean":
        layers.append({"mean": {"dim": draw(st.sampled_from([1, -2])), "keepdim": draw(st.booleans())}})
    elif end == "select":
        layers.append({"select": {"dim": 1, "index": draw(st.integers(-t, t - 1))}})
    elif end == "flatten":
        layers.append("flatten")
        e2 = t * e2
    if e2 == e and end != "flatten" and draw(st.booleans()):
        layers.append({"linear": {"out_features": v, "tied_to": "wte", "bias": draw(st.booleans())}})
    return {"input": [t], "batch": draw(st.integers(1, 3)), "layers": layers}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(sequence_config())
def test_random_sequence_models_match_pytorch(config: dict[str, Any]) -> None:
    compare(config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(random_config())
def test_random_configs_match_pytorch(config: dict[str, Any]) -> None:
    compare(config)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_match_pytorch(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    if config.get("batch", 1) > 8 or config["input"][-1] > 200:
        config["batch"] = 1  # keep the oracle's forward pass cheap; the counts scale exactly
    compare(config)
