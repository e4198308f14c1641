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

# one input each: the encoder-decoders (named inputs) are checked against transformers in tests/test_streams.py
CONFIGS = [p for p in sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
           if "\ninput: {" not in p.read_text()]
BIGGEST = 500_000_000  # params: a bigger torch model does not fit this machine's memory in float32
ACTIVATIONS = ["relu", "relu6", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "identity"]


def leaf_shapes(report: Any) -> list[tuple[int, ...]]:
    return [tuple(r["output_shape"]) for r in report.rows() if r["type"] in REGISTRY and not REGISTRY[r["type"]].is_block()]


def compare(config: dict[str, Any]) -> None:
    """Both sides on one config: equal numbers, or both refuse it."""
    try:
        model, shape = torch_models.build(config)
        # oneDNN off: nn.LSTM runs as matrix products FlopCounterMode counts (its fused kernel
        # counts 0, the 'torch' convention, checked in test_conventions.py); attention's matmuls all counted
        truth = torch_models.counts(model, shape, fused=False, explicit=True)
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
    if rank >= 2 and draw(st.booleans()):
        args["kernel_size"] = [draw(st.integers(1, 4)) for _ in range(rank)]
    stride: Any = draw(st.integers(1, 3))
    if rank == 3 and draw(st.booleans()):
        stride = [draw(st.integers(1, 2)) for _ in range(3)]
    padding = draw(st.one_of(st.integers(0, 2), st.just("same"), st.just("valid")))
    if padding != "same" and stride not in (1, [1, 1, 1]):
        args["stride"] = stride
    args["padding"] = padding
    if draw(st.booleans()):
        args["dilation"] = draw(st.integers(1, 2)) if rank < 3 or draw(st.booleans()) else [draw(st.integers(1, 2)) for _ in range(3)]
    if groups != 1:
        args["groups"] = groups
    if draw(st.booleans()):
        args["bias"] = False
    return args


@st.composite
def spatial_layer(draw: Any, state: dict[str, Any], depth: int) -> Any:
    """One entry for (N, C, *spatial) input; state["c"] tracks the channel count."""
    rank, c = state["rank"], state["c"]
    d = f"{rank}d"
    kind = draw(st.sampled_from(
        ["conv", "conv", "pool", "avgpool", "adaptive", "norm", "act", "act", "dropout", "block", "upsample"]
        + (["convt"] if rank <= 2 else []) + (["shuffle"] if rank == 2 else [])
    ))
    if kind == "upsample":
        return {"upsample": draw(upsample_args(rank))}
    if kind == "shuffle":
        r = draw(st.sampled_from([r for r in (1, 2, 3) if c % (r * r) == 0]))
        state["c"] = c // (r * r)
        return {"pixelshuffle": {"upscale_factor": r}}
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
        return {f"convtranspose{d}": args}
    if kind == "pool":
        k = draw(st.integers(1, 3))
        # dilated windows too: these configs only run forward (PyTorch's max-pool backward writes out of
        # bounds for a dilated window lying wholly in the padding; keep them out of backward runs)
        return {f"maxpool{d}": {"kernel_size": k, "stride": draw(st.one_of(st.none(), small)),
                                "padding": draw(st.integers(0, k // 2)), "dilation": draw(st.integers(1, 2)),
                                "ceil_mode": draw(st.booleans())}}
    if kind == "avgpool":
        k = draw(st.integers(1, 3))
        return {f"avgpool{d}": {"kernel_size": k, "stride": draw(st.one_of(st.none(), small)),
                                "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans()),
                                "count_include_pad": draw(st.booleans())}}
    if kind == "adaptive":
        size: Any = draw(st.integers(1, 5))
        if rank >= 2 and draw(st.booleans()):
            size = [draw(st.integers(1, 5))] + [draw(st.one_of(st.none(), st.integers(1, 5))) for _ in range(rank - 1)]
        kinds = ["avg", "max"] if rank < 3 else ["avg"]
        return {f"adaptive{draw(st.sampled_from(kinds))}pool{d}": {"output_size": size}}
    if kind == "norm":
        choice = draw(st.sampled_from(["batch", "group", "layer"]))
        if choice == "batch":
            return {f"batchnorm{d}": {"affine": draw(st.booleans()), "track_running_stats": draw(st.booleans())}}
        if choice == "group":
            return {"groupnorm": {"num_groups": draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0])),
                                  "affine": draw(st.booleans())}}
        return draw(layernorm())
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


UPSAMPLE_MODES = {1: ["nearest", "linear"], 2: ["nearest", "bilinear", "bicubic"], 3: ["nearest", "trilinear"]}


@st.composite
def upsample_args(draw: Any, rank: int) -> dict[str, Any]:
    """nn.Upsample's arguments for a rank-D input: every mode, size or (float) scale_factor, align_corners."""
    mode = draw(st.sampled_from(UPSAMPLE_MODES[rank]))
    args: dict[str, Any] = {"mode": mode}
    if draw(st.booleans()):
        args["size"] = draw(st.one_of(st.integers(1, 9), st.lists(st.integers(1, 9), min_size=rank, max_size=rank)))
    else:
        factor = st.sampled_from([0.5, 0.7, 1, 1.5, 2, 2.5, 3])
        args["scale_factor"] = draw(st.one_of(factor, st.lists(factor, min_size=rank, max_size=rank)))
    if mode != "nearest" and draw(st.booleans()):
        args["align_corners"] = draw(st.booleans())
    return args


@st.composite
def layernorm(draw: Any) -> dict[str, Any]:
    """layernorm with every argument drawn (bias only matters with elementwise_affine)."""
    affine = draw(st.booleans())
    args: dict[str, Any] = {"elementwise_affine": affine}
    if affine:
        args["bias"] = draw(st.booleans())
    if draw(st.booleans()):
        args["eps"] = draw(st.sampled_from([1e-5, 1e-3]))
    return {"layernorm": args}


@st.composite
def recurrent_layer(draw: Any) -> dict[str, Any]:
    """lstm, gru or rnn: stacked, bidirectional, with or without biases; a projection (sometimes
    too large: both sides refuse it) or a nonlinearity."""
    kind = draw(st.sampled_from(["lstm", "gru", "rnn"]))
    hidden = draw(st.integers(1, 5))
    args: dict[str, Any] = {"hidden_size": hidden, "num_layers": draw(small), "bidirectional": draw(st.booleans()),
                            "bias": draw(st.booleans())}
    if kind == "lstm" and draw(st.booleans()):
        args["proj_size"] = draw(st.integers(0, hidden))
    if kind == "rnn":
        args["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    return {kind: args}


@st.composite
def recurrent_config(draw: Any) -> dict[str, Any]:
    """(N, T, F) sequences through recurrent layers and per-step layers, maybe flattened at the end."""
    per_step = st.one_of(
        st.builds(lambda n, b: {"linear": {"out_features": n, "bias": b}}, st.integers(1, 6), st.booleans()),
        st.sampled_from(["tanh", "relu", "layernorm", "dropout"]),
    )
    layers = draw(st.lists(st.one_of(recurrent_layer(), recurrent_layer(), per_step), min_size=1, max_size=4))
    if draw(st.booleans()):
        layers += ["flatten", {"linear": {"out_features": draw(st.integers(1, 4))}}]
    return {"input": [draw(st.integers(1, 6)), draw(st.integers(1, 5))], "batch": draw(small), "layers": layers}


@st.composite
def random_config(draw: Any) -> dict[str, Any]:
    rank = draw(st.sampled_from([0, 1, 2, 2, 3, "recurrent"]))
    if rank == "recurrent":
        return draw(recurrent_config())
    c = draw(st.integers(1, 6))
    if rank == 0:
        shape = [draw(st.integers(1, 12))]
    elif rank == 1:
        shape = [c, draw(st.integers(4, 40))]
    elif rank == 2:
        shape = [c, draw(st.integers(4, 24)), draw(st.integers(4, 24))]
    else:
        shape = [c, *(draw(st.integers(3, 8)) for _ in range(3))]
    state = {"rank": rank, "c": c}
    layers: list[Any] = []
    if rank:
        layers = draw(st.lists(spatial_layer(state, 0), min_size=1, max_size=6))
        # then flatten everything, or only some dims, or nothing: linear layers then see inputs of
        # rank 3 and more (they act on the last dim; torchinfo ignores the middle ones)
        layers += draw(st.sampled_from([
            ["flatten"], [], [{"flatten": {"start_dim": 2}}], [{"flatten": {"start_dim": 1, "end_dim": -2}}],
            [{"flatten": {"start_dim": -2, "end_dim": -1}}],
        ]))
    layers += draw(st.lists(st.one_of(
        st.builds(lambda n, b: {"linear": {"out_features": n, "bias": b}}, st.integers(1, 9), st.booleans()),
        st.sampled_from(ACTIVATIONS + ["dropout", "softmax"]),
        st.builds(lambda a, t: {"batchnorm1d": {"affine": a, "track_running_stats": t}}, st.booleans(), st.booleans()),
        layernorm(),
    ), min_size=1, max_size=4))
    return {"input": shape, "batch": draw(st.integers(1, 3)), "layers": layers}


@st.composite
def sequence_layer(draw: Any, t: int, e: int, depth: int = 0) -> tuple[Any, int, int]:
    """One entry for (N, t, e) sequences, and the (t, e) it gives (a transpose swaps them)."""
    kind = draw(st.sampled_from(["pos", "cls", "rms", "layernorm", "linear", "glu", "act", "swap", "reshape", "block",
                                 "recurrent", "attn"]))
    if kind == "recurrent":  # lstm, gru, rnn: (N, T, E) -> (N, T, D·H)
        entry = draw(recurrent_layer())
        args = next(iter(entry.values()))
        return entry, t, (2 if args["bidirectional"] else 1) * (args.get("proj_size") or args["hidden_size"])
    if kind == "attn":  # the attention family (tests/test_attention.py has its own, wider generator)
        h = draw(st.sampled_from([d for d in (1, 2, 3, 4) if e % d == 0]))
        return draw(st.sampled_from([
            {"multiheadattention": {"num_heads": h, "causal": draw(st.booleans())}},
            {"attention": {"num_heads": h, "rope": (e // h) % 2 == 0 and draw(st.booleans())}},
            {"transformerencoderlayer": {"nhead": h, "dim_feedforward": draw(st.integers(1, 8)),
                                         "norm_first": draw(st.booleans())}},
        ])), t, e
    if kind == "pos":  # sometimes too short a table: both sides must refuse it
        return {"posembedding": {"num_positions": draw(st.one_of(st.none(), st.integers(max(1, t - 1), t + 2)))}}, t, e
    if kind == "cls":
        return "clstoken", t + 1, e
    if kind == "rms":
        return {"rmsnorm": {"elementwise_affine": draw(st.booleans()), "eps": draw(st.sampled_from([None, 1e-6]))}}, t, e
    if kind == "layernorm":
        return "layernorm", t, e
    if kind == "linear":
        out = draw(st.integers(1, 8))
        return {"linear": {"out_features": out, "bias": draw(st.booleans())}}, t, out
    if kind == "glu":  # SwiGLU's gate and up projections
        h = draw(st.integers(1, 8))
        gate = [{"linear": {"out_features": h, "bias": False}}, draw(st.sampled_from(["silu", "sigmoid", "gelu"]))]
        return {"multiply": {"branches": [gate, [{"linear": {"out_features": h, "bias": False}}]]}}, t, h
    if kind == "act":
        return draw(st.sampled_from(ACTIVATIONS)), t, e
    if kind == "swap":
        return draw(st.sampled_from([{"transpose": {"dim0": 1, "dim1": 2}}, {"transpose": {"dim0": -1, "dim1": -2}},
                                     {"permute": {"dims": [0, 2, 1]}}, {"permute": {"dims": [0, -1, 1]}}])), e, t
    if kind == "reshape":
        return draw(st.sampled_from([{"reshape": {"shape": [-1, e]}}, {"reshape": {"shape": [t, e]}}])), t, e
    if depth >= 1:
        return "identity", t, e
    first, t2, _ = draw(sequence_layer(t, e, depth + 1))
    # the body ends projecting back to e; a body that changes the length is replaced, to keep shapes equal
    body = [first if t2 == t else {"rmsnorm": None}, {"linear": {"out_features": e}}]
    return {"residual": {"body": body}}, t, e


@st.composite
def sequence_config(draw: Any) -> dict[str, Any]:
    """Token ids -> embedding -> sequence layers -> a pooled or per-token output (maybe a tied head)."""
    t0, v, e0 = draw(st.integers(1, 8)), draw(st.integers(2, 20)), draw(st.integers(1, 8))
    embedding: dict[str, Any] = {"num_embeddings": v, "embedding_dim": e0}
    if draw(st.booleans()):
        embedding["padding_idx"] = draw(st.integers(-v, v - 1))
    layers: list[Any] = [{"embedding": embedding, "name": "wte"}]
    t, e = t0, e0
    for _ in range(draw(st.integers(0, 5))):
        entry, t, e = draw(sequence_layer(t, e))
        layers.append(entry)
    end = draw(st.sampled_from(["mean", "select", "flatten", "none"]))
    if end == "mean":
        layers.append({"mean": {"dim": draw(st.sampled_from([1, -2])), "keepdim": draw(st.booleans())}})
    elif end == "select":
        layers.append({"select": {"dim": 1, "index": draw(st.integers(-t, t - 1))}})
    elif end == "flatten":
        layers.append("flatten")
    if e == e0 and end != "flatten" and draw(st.booleans()):
        layers.append({"linear": {"out_features": v, "tied_to": "wte", "bias": draw(st.booleans())}})
    return {"input": [t0], "batch": draw(st.integers(1, 3)), "layers": layers}


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
    if analyse(config).total["params"] > BIGGEST:
        pytest.skip("too big for a float32 torch model here; test_transformer_configs checks a small Llama")
    if config.get("batch", 1) > 8 or config["input"][-1] > 200:
        config["batch"] = 1  # keep the oracle's forward pass cheap; the counts scale exactly
    compare(torch_models.reduced(config))
