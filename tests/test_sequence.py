"""The sequence-model plumbing: embedding, posembedding, clstoken, rmsnorm, transpose, permute,
reshape, select, mean, the multiply block and linear's tied_to.

Expected numbers are worked out by hand (the arithmetic is written out) or come from PyTorch;
the NumPy forward/backward of each type is compared with torch autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from layercalc import analyse
from layercalc.errors import ConfigError, ShapeError
from layercalc.verify import backward, forward
from layercalc.verify import Options, plan, verify
from test_layers import CASE_FIELDS, check_case

# (entry, input shape with batch, output shape, params, buffers, macs); the input of an
# embedding is integer token ids
CASES = [
    # embedding: a V x D table; (N, T) ids -> (N, T, D); a lookup, no MACs
    ({"embedding": {"num_embeddings": 100, "embedding_dim": 16}}, (2, 7), (2, 7, 16), 100 * 16, 0, 0),
    # any id shape (N, *): (3, 4, 5) -> (3, 4, 5, 8); padding_idx adds nothing
    ({"embedding": {"num_embeddings": 10, "embedding_dim": 8, "padding_idx": -1}}, (3, 4, 5), (3, 4, 5, 8), 10 * 8, 0, 0),
    # posembedding: a num_positions x E table, its first T = 7 rows added
    ({"posembedding": {"num_positions": 10}}, (2, 7, 16), (2, 7, 16), 10 * 16, 0, 0),
    # num_positions null = T: 7 x 16
    ("posembedding", (2, 7, 16), (2, 7, 16), 7 * 16, 0, 0),
    # clstoken, ViT-B/16: 196 patches + 1 token = 197; one E = 768 vector
    ("clstoken", (2, 196, 768), (2, 197, 768), 768, 0, 0),
    # rmsnorm: one scale per feature of the last dim, no bias
    ("rmsnorm", (2, 5, 16), (2, 5, 16), 16, 0, 0),
    ({"rmsnorm": {"elementwise_affine": False, "eps": 1e-6}}, (3, 8), (3, 8), 0, 0, 0),
    # transpose swaps dims 1 and 2: (2, 3, 5) -> (2, 5, 3); negative dims count from the end
    ({"transpose": {"dim0": 1, "dim1": 2}}, (2, 3, 5), (2, 5, 3), 0, 0, 0),
    ({"transpose": {"dim0": -1, "dim1": -2}}, (2, 3, 4, 5), (2, 3, 5, 4), 0, 0, 0),
    # permute [0, 2, 3, 1]: (2, 3, 4, 5) -> (2, 4, 5, 3)
    ({"permute": {"dims": [0, 2, 3, 1]}}, (2, 3, 4, 5), (2, 4, 5, 3), 0, 0, 0),
    # reshape one sample's 3·8 = 24 values to [4, -1]: -1 = 24 / 4 = 6
    ({"reshape": {"shape": [4, -1]}}, (2, 3, 8), (2, 4, 6), 0, 0, 0),
    ({"reshape": {"shape": [2, 12]}}, (2, 3, 8), (2, 2, 12), 0, 0, 0),
    # select the class token: (2, 197, 768) -> (2, 768); the last of dim -1 (size 4): (2, 3, 4) -> (2, 3)
    ({"select": {"dim": 1, "index": 0}}, (2, 197, 768), (2, 768), 0, 0, 0),
    ({"select": {"dim": -1, "index": -1}}, (2, 3, 4), (2, 3), 0, 0, 0),
    # mean over the tokens: (2, 5, 16) -> (2, 16), or (2, 1, 16) with keepdim
    ({"mean": {"dim": 1}}, (2, 5, 16), (2, 16), 0, 0, 0),
    ({"mean": {"dim": -2, "keepdim": True}}, (2, 5, 16), (2, 1, 16), 0, 0, 0),
    # SwiGLU's gate: silu(x W1ᵀ) * (x W3ᵀ), 16 -> 32 each without bias: 2 · 16·32 params,
    # 2 · (2·5 positions · 16·32) MACs; the product itself is not a MAC
    (
        {"multiply": {"branches": [[{"linear": {"out_features": 32, "bias": False}}, "silu"],
                                   [{"linear": {"out_features": 32, "bias": False}}]]}},
        (2, 5, 16), (2, 5, 32), 2 * 16 * 32, 0, 2 * (2 * 5 * 16 * 32),
    ),
    # GLU with an identity branch: x * sigmoid(x W + b), 6 -> 6: 6·6 + 6 params, 3·6·6 MACs
    ({"multiply": {"branches": [[], [{"linear": {"out_features": 6}}, "sigmoid"]]}}, (3, 6), (3, 6), 6 * 6 + 6, 0, 3 * 6 * 6),
]

LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere
TOKEN_TYPES = ("embedding",)


def is_ids(entry: Any) -> bool:
    return (entry if isinstance(entry, str) else next(iter(entry))) in TOKEN_TYPES


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:40])
def test_layer_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def lm(head: dict[str, Any], vocab: int = 50, width: int = 16, seq: int = 8) -> dict[str, Any]:
    """A tiny language model: embedding 'wte' -> rmsnorm -> the given head."""
    return {"input": [seq], "batch": 2, "layers": [
        {"embedding": {"num_embeddings": vocab, "embedding_dim": width}, "name": "wte"}, "rmsnorm", head]}


def test_tied_head_counts_the_table_once() -> None:
    # table 50·16 = 800, rmsnorm 16; the tied head adds only its bias (50); MACs 2·8 positions · 16·50
    report = analyse(lm({"linear": {"out_features": 50, "tied_to": "wte"}}))
    assert report.total["params"] == 50 * 16 + 16 + 50
    assert report.total["macs"] == 2 * 8 * 16 * 50
    assert [r["params"] for r in report.rows()] == [800, 16, 50]
    # without a bias: nothing at all; untied, the head is a second 50·16 table
    assert analyse(lm({"linear": {"out_features": 50, "tied_to": "wte", "bias": False}})).total["params"] == 816
    assert analyse(lm({"linear": {"out_features": 50, "bias": False}})).total["params"] == 816 + 800


def test_tied_head_inside_a_block_and_repeated() -> None:
    head = {"sequential": {"layers": [{"linear": {"out_features": 50, "tied_to": "wte", "bias": False}}]}}
    assert analyse(lm(head)).total["params"] == 816
    # two tied heads on 16 -> 50 cannot chain; a repeated tied 16 -> 16 projection on a 16-token table
    config = lm({"linear": {"out_features": 16, "tied_to": "wte", "bias": False}, "repeat": 3}, vocab=16)
    assert analyse(config).total["params"] == 16 * 16 + 16


def test_token_input_flows_through_a_leading_block() -> None:
    # a sequential that starts with the embedding takes the ids too
    config = {"input": [4], "layers": [{"sequential": {"layers": [
        {"embedding": {"num_embeddings": 9, "embedding_dim": 3}}, "rmsnorm"]}}]}
    report = analyse(config)
    assert report.output_shape == (1, 4, 3) and report.total["params"] == 9 * 3 + 3
    assert report.entries[0].ids == 9


# -- NumPy forward and backward against torch autograd ----------------------------------------
torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("torch_models")
TOL = {"rtol": 1e-7, "atol": 1e-9}


def torch_check(config: dict[str, Any], seed: int = 3) -> None:
    """Our forward, input gradient and parameter gradients equal torch autograd's (float64)."""
    root, _ = plan(analyse(config), Options(seed=seed))
    # verify gives a tied parameter its own array; here it is the owner's, as in torch
    leaves = {inst.name: inst for inst in root.walk() if inst.is_leaf}
    tied = [(inst, p, leaves[owner]) for inst in leaves.values() for p, owner in inst.layer.shared_params().items()]
    for inst, pname, owner in tied:
        inst.params[pname] = owner.params[pname]
    rng = np.random.default_rng(seed + 1)
    shape = (config.get("batch", 1), *config["input"])
    tokens = root.entry.ids
    x = rng.integers(0, tokens, shape) if tokens else rng.standard_normal(shape)
    y, cache = forward(root, x)
    dy = rng.standard_normal(y.shape)
    grads: dict = {}
    dx = backward(root, dy, cache, grads)
    for inst, pname, owner in tied:  # a shared tensor's gradient sums over its uses
        grads[owner][pname] = grads[owner][pname] + grads[inst][pname]

    model, _ = torch_models.build(config)
    model = model.double().train()
    # ours: every array, tied ones included; theirs: each tensor once. Tied arrays are set from the owner.
    ours = [(o, n, a) for o, n, a in root.all_params() if n not in o.layer.shared_params()]
    theirs = list(model.parameters())
    assert [a.shape for _, _, a in ours] == [tuple(p.shape) for p in theirs]
    for (_, _, arr), p in zip(ours, theirs):
        p.data = torch.tensor(arr)
    tx = torch.tensor(x) if tokens else torch.tensor(x, requires_grad=True)
    ty = model(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    if tokens:
        assert dx is None  # ids have no gradient
    else:
        np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    for (owner, name, _), p in zip(ours, theirs):
        np.testing.assert_allclose(grads[owner][name], p.grad.numpy(), **TOL)


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:40])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple[int, ...]) -> None:
    torch_check({"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]})


@pytest.mark.parametrize("padding_idx", [0, 3, -1, -10])
def test_embedding_padding_row_gets_no_gradient(padding_idx: int) -> None:
    # ids 0..9 all appear, twice each: the scatter-add sums repeats; the padding row stays 0
    config = {"input": [10], "batch": 2,
              "layers": [{"embedding": {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": padding_idx}}]}
    root, _ = plan(analyse(config), Options(seed=0))
    leaf = root.sequences[0][0]
    assert not leaf.params["weight"][padding_idx % 10].any()  # zeroed at construction, as nn.Embedding
    ids = np.array([np.arange(10), np.arange(10)[::-1]])
    _, cache = forward(root, ids)
    grads: dict = {}
    backward(root, np.ones((2, 10, 4)), cache, grads)
    expected = np.full((10, 4), 2.0)
    expected[padding_idx % 10] = 0.0
    np.testing.assert_array_equal(grads[leaf]["weight"], expected)
    module = torch.nn.Embedding(10, 4, padding_idx=padding_idx)
    module(torch.tensor(ids)).sum().backward()
    np.testing.assert_array_equal(module.weight.grad.numpy(), expected)


SMALL_LM = {
    "input": [6], "batch": 2,
    "layers": [
        {"embedding": {"num_embeddings": 11, "embedding_dim": 8, "padding_idx": 0}, "name": "wte"},
        {"posembedding": {"num_positions": 9}},
        "clstoken",
        {"rmsnorm": None},
        {"residual": {"body": [
            "rmsnorm",
            {"multiply": {"branches": [[{"linear": {"out_features": 12, "bias": False}}, "silu"],
                                       [{"linear": {"out_features": 12, "bias": False}}]]}},
            {"linear": {"out_features": 8, "bias": False}},
        ]}},
        {"transpose": {"dim0": 1, "dim1": 2}},
        {"permute": {"dims": [0, 2, 1]}},
        {"reshape": {"shape": [7, 2, 4]}},
        {"reshape": {"shape": [-1, 8]}},
        {"linear": {"out_features": 11, "tied_to": "wte"}, "name": "head"},
    ],
}
POOLED = {"input": [5], "batch": 3, "layers": [
    {"embedding": {"num_embeddings": 7, "embedding_dim": 6}}, "clstoken",
    {"multiply": {"branches": [[{"linear": {"out_features": 6}}], [{"linear": {"out_features": 6}}, "gelu"]]}},
    {"mean": {"dim": 1, "keepdim": True}}, {"select": {"dim": 1, "index": -1}}, {"linear": {"out_features": 2}},
]}


@pytest.mark.parametrize("config", [SMALL_LM, POOLED], ids=["tied_lm", "pooled"])
def test_small_networks_match_torch(config: dict[str, Any]) -> None:
    torch_check(config)


# -- verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [SMALL_LM, POOLED], ids=["tied_lm", "pooled"])
def test_verify_passes_on_sequence_networks(config: dict[str, Any]) -> None:
    result = verify(analyse(config))
    assert result.passed, [c for c in result.checks if not c.passed]
    checks = {(c.path, c.check) for c in result.checks}
    assert ("wte" if config is SMALL_LM else "embedding1", "dL/dweight") in checks
    assert not any(p in ("wte", "embedding1") and c == "dL/dx" for p, c in checks)  # ids: no input gradient
    assert ("(network)", "dL/d(params)") in checks


def test_verify_catches_a_wrong_product_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from layercalc.layers import REGISTRY

    monkeypatch.setattr(REGISTRY["multiply"], "split", lambda self, dy, outs: [dy * outs[1], dy])
    failed = {c.path for c in verify(analyse(POOLED)).checks if not c.passed}
    assert {"multiply1", "(network)"} <= failed


def test_verify_catches_a_wrong_rmsnorm_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    from layercalc.layers import REGISTRY

    # dropping the term from the rms's dependence on every x: the layernorm-style bug
    monkeypatch.setattr(REGISTRY["rmsnorm"], "backward",
                        lambda self, dy, params, cache: (dy * params["weight"] * cache[1], {"weight": (dy * cache[0]).sum(axis=(0, 1))}))
    failed = {(c.path, c.check) for c in verify(analyse(SMALL_LM)).checks if not c.passed}
    assert ("rmsnorm1", "dL/dx") in failed


def test_verify_of_an_embedding_ignores_no_weight_rows() -> None:
    # with 2 tokens and 40 ids, most rows get no gradient; the check still compares the whole table
    config = {"input": [2], "layers": [{"embedding": {"num_embeddings": 40, "embedding_dim": 3}}]}
    assert verify(analyse(config), Options(full=True)).passed


# -- bad input: one line, file:line, layer, exit 2 ------------------------------------------------

HEAD = "input: [8]\nlayers:\n  - embedding: {num_embeddings: 20, embedding_dim: 6}\n    name: wte\n"
MISTAKES = [
    (HEAD + "  - posembedding: {num_positions: 4}\n",
     "net.yaml:5: layers[1] (posembedding 'posembedding1'): sequence length 8 exceeds num_positions 4 (input 1x8x6)"),
    (HEAD + "  - linear: {out_features: 20, tied_to: wpe}\n",
     "net.yaml:5: layers[1] (linear 'linear1'): weight tied to 'wpe', but no earlier layer is named 'wpe'"),
    (HEAD + "  - linear: {out_features: 21, tied_to: wte}\n",
     "net.yaml:5: layers[1] (linear 'linear1'): weight tied to 'wte', but embedding 'wte''s weight is 20x6"
     " and this weight is 21x6"),
    ("input: [8]\nlayers:\n  - linear: {out_features: 6, tied_to: head}\n  - linear: {out_features: 6}\n    name: head\n",
     "net.yaml:3: layers[0] (linear 'linear1'): weight tied to 'head', but no earlier layer is named 'head'"),
    (HEAD + "  - {relu: null, name: act}\n  - linear: {out_features: 20, tied_to: act}\n",
     "net.yaml:6: layers[2] (linear 'linear1'): weight tied to 'act', but relu 'act' has no weight of its own"),
    ("input: [3, 8]\nlayers:\n  - linear: {out_features: 6}\n  - embedding: {num_embeddings: 20, embedding_dim: 6}\n",
     "net.yaml:4: layers[1] (embedding 'embedding1'): reads integer token ids, so it must be the network's first"
     " layer; its input here is 1x3x6 real values"),
    (HEAD + "  - residual:\n      body:\n        - embedding: {num_embeddings: 20, embedding_dim: 6}\n",
     "net.yaml:7: layers[1].body[0] (embedding 'embedding1'): reads integer token ids, so it must be the"
     " network's first layer; its input here is 1x8x6 real values"),
    ("input: [8]\nlayers:\n  - embedding: {num_embeddings: 20, embedding_dim: 6}\n    repeat: 2\n",
     "net.yaml:3: layers[0] (embedding 'embedding1'): reads integer token ids, so it must be the network's first"
     " layer; its input here is 1x8x6 real values"),
    ("input: [8]\nlayers:\n  - concat:\n      branches: [[{embedding: {num_embeddings: 5, embedding_dim: 2}}], [relu]]\n",
     "net.yaml:4: layers[0].branches[1][0] (relu 'relu1'): takes real values, but its input here is the"
     " network's integer token ids"),
    (HEAD + "  - permute: {dims: [0, 2, 2]}\n",
     "net.yaml:5: layers[1] (permute 'permute1'): dims [0, 2, 2] is not a permutation of the 3 dims"),
    (HEAD + "  - permute: {dims: [1, 0, 2]}\n",
     "net.yaml:5: layers[1] (permute 'permute1'): dims [1, 0, 2] moves the batch dimension; it must stay first"),
    (HEAD + "  - permute: {dims: [0, 1]}\n",
     "net.yaml:5: layers[1] (permute 'permute1'): dims [0, 1] name 2 dims but the input 1x8x6 has 3"),
    (HEAD + "  - reshape: {shape: [5, 10]}\n",
     "net.yaml:5: layers[1] (reshape 'reshape1'): shape [5, 10] holds 50 values but a sample of 1x8x6 has 48"),
    (HEAD + "  - reshape: {shape: [5, -1]}\n",
     "net.yaml:5: layers[1] (reshape 'reshape1'): shape [5, -1] cannot hold the 48 values of a sample of 1x8x6"),
    (HEAD + "  - reshape: {shape: [-1, -1]}\n",
     "net.yaml:5: layers[1] (reshape 'reshape1'): shape: only one entry may be -1, got [-1, -1]"),
    (HEAD + "  - transpose: {dim0: 0, dim1: 2}\n",
     "net.yaml:5: layers[1] (transpose 'transpose1'): dim0 0 is the batch dimension of 1x8x6; it must stay first"),
    (HEAD + "  - select: {dim: 1, index: 8}\n",
     "net.yaml:5: layers[1] (select 'select1'): index 8 is out of range for dim 1 of size 8"),
    (HEAD + "  - mean: {dim: 3}\n",
     "net.yaml:5: layers[1] (mean 'mean1'): dim 3 is out of range for 3-D input 1x8x6"),
    ("input: [8]\nlayers:\n  - embedding: {num_embeddings: 20, embedding_dim: 6, padding_idx: 20}\n",
     "net.yaml:3: layers[0] (embedding 'embedding1'): padding_idx: 20 is outside [-20, 19] (num_embeddings 20)"),
    (HEAD + "  - multiply: {branches: [[{linear: {out_features: 4}}], []]}\n",
     "net.yaml:5: layers[1] (multiply 'multiply1'): branch 1 gives 1x8x6 but branch 0 gives 1x8x4;"
     " multiply broadcasts as PyTorch does: from the last dim, sizes must be equal or 1"),
    (HEAD + "  - permute: {dims: [0, a]}\n",
     "net.yaml:5: layers[1] (permute 'permute1'): dims: expected a list of dims like [0, 2, 1], got [0, 'a']"),
    (HEAD + "  - select: {dim: 1, index: first}\n",
     "net.yaml:5: layers[1] (select 'select1'): index: expected an integer (negative counts back from the end),"
     " got 'first'"),
    (HEAD + "  - linear: {out_features: 20, tied_to: a.b}\n",
     "net.yaml:5: layers[1] (linear 'linear1'): tied_to: expected a layer name, got 'a.b'"),
    (HEAD + "  - clstoken\n  - mean: {dim: 1}\n  - clstoken\n",
     "net.yaml:7: layers[3] (clstoken 'clstoken2'): expects input (N, T, E), got 1x6"),
]


@pytest.mark.parametrize("text, message", MISTAKES, ids=[m[1].split(": ", 2)[-1][:40] for m in MISTAKES])
def test_bad_sequence_configs_are_one_line_errors(cli, write, text: str, message: str) -> None:
    path = write("net.yaml", text)
    run = cli("summary", path)
    assert run.status == 2 and run.out == ""
    assert run.err.replace(path, "net.yaml") == f"error: {message}\n"


def test_tied_to_is_checked_by_the_api_too() -> None:
    with pytest.raises(ShapeError, match="no earlier layer is named 'x'"):
        analyse(lm({"linear": {"out_features": 50, "tied_to": "x"}}))
    with pytest.raises(ConfigError, match="tied_to: expected a layer name, got 3"):
        analyse(lm({"linear": {"out_features": 50, "tied_to": 3}}))


# -- conventions: each peer tool on the equivalent torch model -----------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402

from layercalc.conventions import training  # noqa: E402
from test_conventions import TOOLS, matches_each_tool, ours, tool_total  # noqa: E402
from test_torch_crosscheck import sequence_config  # noqa: E402


def one_layer(entry: Any, x_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:40])
def test_each_type_as_each_tool_counts_it(entry: Any, x_shape: tuple[int, ...], tool: str) -> None:
    config = one_layer(entry, x_shape)
    assert ours(config, tool) == tool_total(tool, config)


def test_the_tools_part_ways_as_measured() -> None:
    # what each tool printed for these layers (torch 2.13, torchinfo 1.8, fvcore 0.1.5, thop 0.1.1,
    # ptflops 0.7.5): torchinfo charges nn.Embedding output.shape[0] x V·D (batch 2: 2·100·16) and
    # nn.RMSNorm output.shape[0] x E (2·16); no tool counts anything else here
    assert ours(one_layer(*CASES[0][:2]), "torchinfo") == 2 * 100 * 16
    assert ours(one_layer(*CASES[5][:2]), "torchinfo") == 2 * 16
    for tool in ("torch", "fvcore", "thop", "ptflops"):
        assert all(ours(one_layer(c[0], c[1]), tool) == 0 for c in CASES[:16]), tool


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("config", [SMALL_LM, POOLED], ids=["tied_lm", "pooled"])
def test_small_networks_as_each_tool_counts_them(config: dict[str, Any], tool: str) -> None:
    assert ours(config, tool) == tool_total(tool, config)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(sequence_config())
def test_random_sequence_models_as_each_tool_counts_them(config: dict[str, Any]) -> None:
    matches_each_tool(config)


@pytest.mark.parametrize("config", [SMALL_LM, POOLED], ids=["tied_lm", "pooled"])
def test_training_matches_flopcountermode_forward_and_backward(config: dict[str, Any]) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch_models.example(model, shape)).sum().backward()
    assert training(analyse(config), "torch")["training_flops"] == counter.get_total_flops()


# -- verify --impl: each classic bug of these types fails, naming the layer ----------------------

IMPL_NET = (
    "input: [12]\nbatch: 2\nlayers:\n"
    "  - embedding: {num_embeddings: 5, embedding_dim: 4, padding_idx: 1}\n    name: wte\n"
    "  - rmsnorm:\n    name: norm\n"
    "  - linear: {out_features: 3}\n"
)


@pytest.mark.parametrize(
    "impl, layer, check",
    [
        ("rmsnorm_no_mean_term.py", "norm", "dL/dx"),
        ("embedding_trains_padding.py", "wte", "dL/dweight row 1 = 0"),  # the padding row: zero by definition
        ("embedding_no_repeats.py", "wte", "dL/dweight"),
    ],
)
def test_wrong_backward_is_caught_and_named(cli, write, impl: str, layer: str, check: str) -> None:
    import csv
    import io
    from pathlib import Path

    impls = Path(__file__).resolve().parent / "impls"
    run = cli("verify", write("lm.yaml", IMPL_NET), "--impl", str(impls / impl), "-f", "tsv")
    assert run.status == 1, run.err
    failed = [r for r in csv.DictReader(io.StringIO(run.out), delimiter="\t") if r["passed"] != "True"]
    assert any(r["path"] == layer and r["check"] == check for r in failed), failed


def test_the_reference_implementations_pass_with_impl(cli, write) -> None:
    for impl in ("layercalc.layers.tokens:Embedding", "layercalc.layers.norm:RMSNorm"):
        run = cli("verify", write("lm.yaml", IMPL_NET), "--impl", impl, "-f", "tsv")
        assert run.status == 0, run.out

