"""The mixture of experts (moe): hand-computed numbers, the routing against transformers' own router,
the torch oracle against transformers' MixtralSparseMoeBlock, NumPy forward/backward against torch,
the run table's held and run copies, active_params, and bad input.

Every expected number is worked out by hand; the arithmetic is written out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from layercalc import analyse
from layercalc.errors import ConfigError
from test_layers import CASE_FIELDS, check_case

# Mixtral's expert at toy size: w2(silu(w1 x) * w3 x), E = 4, intermediate 6, no biases
SWIGLU = [
    {"multiply": {"branches": [[{"linear": {"out_features": 6, "bias": False}, "name": "w1"}, "silu"],
                               [{"linear": {"out_features": 6, "bias": False}, "name": "w3"}]]}},
    {"linear": {"out_features": 4, "bias": False}, "name": "w2"},
]
MIXTRAL_TOY = {"moe": {"num_experts": 4, "top_k": 2, "expert": SWIGLU}}
SHARED = {"moe": {"num_experts": 3, "top_k": 1, "router_bias": True, "expert": [{"linear": {"out_features": 3}}],
                  "shared": [{"linear": {"out_features": 3}}]}}

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # batch 2 × T 5 = 10 tokens of E 4. gate 4·4 = 16 params, 10·4·4 = 160 MACs; one expert
    # w1 4·6 + w3 4·6 + w2 6·4 = 72 params, 72 MACs a token; held 4 times: 288 params; run top_k 2
    # times per token: 2·10·72 = 1,440 MACs. Params 16 + 288 = 304; MACs 160 + 1,440 = 1,600
    (MIXTRAL_TOY, (2, 5, 4), (2, 5, 4), 304, 0, 1600),
    # 5 tokens of E 3. gate 3·3 + 3 (router_bias) = 12 params, 5·3·3 = 45 MACs; an expert 3·3 + 3 =
    # 12 params, held 3 times: 36; run once a token: 5·9 = 45 MACs; shared 12 params, 45 MACs.
    # Params 12 + 36 + 12 = 60; MACs 45 + 45 + 45 = 135
    (SHARED, (1, 5, 3), (1, 5, 3), 60, 0, 135),
]
LAYER_CASES = CASES


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_layer_numbers(entry: Any, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def test_rows_show_the_expert_once_held_num_experts_times() -> None:
    report = analyse({"input": [3, 4], "batch": 2, "layers": [{**MIXTRAL_TOY, "name": "moe"}]})
    rows = {r["path"]: r for r in report.rows()}
    assert list(rows) == ["moe", "moe.gate", "moe.experts.0-3"]  # the expert's layers fold into its row
    expert = rows["moe.experts.0-3"]
    # 4 experts of 72 params; 2 of them run over the 6 tokens (flattened: the router's and experts' input)
    assert (expert["copies"], expert["active_copies"], expert["params"], expert["macs"]) == (4, 2, 288, 864)
    assert expert["input_shape"] == [6, 4] and rows["moe.gate"]["input_shape"] == [6, 4]
    # the run table: parameter sets held and runs apart, below the expert row too
    held = {x.path: (x.held, x.copies) for x in report.run_table}
    assert held["moe.experts.0-3"] == (4, 2) and held["moe.experts.0-3.w2"] == (4, 2)
    assert report.fold(lambda x: x.entry.params, held=True) == 304 == report.total["params"]
    # active: params − (4 − 2) experts = 304 − 144 = 160 = 16 + 2·72
    assert report.total["active_params"] == 160 == report.fold(lambda x: x.entry.params)


def test_active_params_count_each_moe_of_a_repeat() -> None:
    # 3 copies of the toy moe: 3·304 = 912 params, 3·160 = 480 active; a network without a moe has none
    report = analyse({"input": [3, 4], "layers": [{**MIXTRAL_TOY, "repeat": 3}]})
    assert (report.total["params"], report.total["active_params"]) == (912, 480)
    assert "active_params" not in analyse({"input": [3, 4], "layers": SWIGLU}).total


def test_a_frozen_moe_freezes_its_router() -> None:
    report = analyse({"input": [3, 4], "layers": [{**MIXTRAL_TOY, "trainable": False}]})
    assert report.total["trainable_params"] == 0 and report.total["params"] == 304


def test_routing_is_mixtrals_router() -> None:
    """Our route (softmax, top k, renormalised) against transformers' MixtralTopKRouter on the same logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter

    from layercalc.layers import REGISTRY

    config = transformers.MixtralConfig(hidden_size=5, num_local_experts=6, num_experts_per_tok=2)
    router = MixtralTopKRouter(config).double()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5))
    with torch.no_grad():
        router.weight.copy_(torch.tensor(rng.standard_normal((6, 5))))
        logits, weights, chosen = router(torch.tensor(x))
    ours = REGISTRY["moe"](num_experts=6, top_k=2, expert=[], shared=[])
    our_chosen, our_weights = ours.route(logits.numpy())
    np.testing.assert_array_equal(our_chosen, chosen.numpy())
    # transformers takes the softmax in float32 (router_logits.float()): float32's precision
    np.testing.assert_allclose(our_weights, weights.numpy(), rtol=1e-6)


def test_oracle_is_transformers_mixtral_block() -> None:
    """tests/torch_models.py's SparseMoe (one module per expert) computes what transformers'
    MixtralSparseMoeBlock (experts as 3-D tensors) computes, given the same weights."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch_models
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = transformers.MixtralConfig(hidden_size=4, intermediate_size=6, num_local_experts=4, num_experts_per_tok=2)
    config._experts_implementation = "eager"
    theirs = MixtralSparseMoeBlock(config).double().eval()
    ours, shape = torch_models.build({"input": [3, 4], "batch": 2, "layers": [MIXTRAL_TOY]})
    ours = ours.double()[0]
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters()) == 304
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        theirs.gate.weight.copy_(torch.randn(4, 4, generator=gen, dtype=torch.float64))
        ours.gate.weight.copy_(theirs.gate.weight)
        for e, expert in enumerate(ours.experts):
            w1, w3, w2 = expert[0].branches[0][0].weight, expert[0].branches[1][0].weight, expert[1].weight
            for w in (w1, w3, w2):
                w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float64))
            theirs.experts.gate_up_proj[e].copy_(torch.cat([w1, w3]))  # [gate; up] along the intermediate dim
            theirs.experts.down_proj[e].copy_(w2)
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch(entry: Any, x_shape: tuple) -> None:
    pytest.importorskip("torch")
    from test_reference_torch import test_forward_and_backward_match_torch as against_torch

    against_torch(entry, x_shape)


def test_split_is_the_gradient_of_merge_by_hand() -> None:
    """One token, 3 experts, top 2: logits z = [0, ln 3, ln 1] pick experts 1 (3/4) and the first of
    the tied 0 and 2 in order, expert 0 (1/4). Outputs a0 = [1], a1 = [5], a2 = [100]:
    y = 3/4·5 + 1/4·1 = 4. dL/dy = 1: the experts get their weights 1/4, 3/4, 0; the chosen logits
    get w_j (g_j − Σ w g), g = [1, 5]: Σ w g = 4, so z0 gets 1/4·(1 − 4) = −3/4, z1 3/4·(5 − 4) = 3/4."""
    from layercalc.layers import REGISTRY

    moe = REGISTRY["moe"](num_experts=3, top_k=2, expert=[], shared=[])
    outs = [np.log(np.array([[1.0, 3.0, 1.0]])), np.array([[1.0]]), np.array([[5.0]]), np.array([[100.0]])]
    assert moe.merge(outs).tolist() == [[4.0]]
    d_logits, d0, d1, d2 = moe.split(np.array([[1.0]]), outs)
    np.testing.assert_allclose(d_logits, [[-0.75, 0.75, 0.0]])
    np.testing.assert_allclose([d0[0, 0], d1[0, 0], d2[0, 0]], [0.25, 0.75, 0.0])


def test_verify_passes_a_moe(cli: Any, write: Any) -> None:
    import json

    path = write("moe.yaml", json.dumps({"input": [3, 4], "batch": 2, "layers": [MIXTRAL_TOY]}))
    run = cli("verify", path, "--format", "json")
    assert run.status == 0, run.out[-2000:]
    checked = {c["path"] for c in json.loads(run.out)["results"]}
    assert {"moe1", "moe1.gate", "moe1.experts.0-3.w2", "(network)"} <= checked


@pytest.mark.parametrize("moe, message", [
    ({"num_experts": 2, "top_k": 3, "expert": [{"linear": {"out_features": 4}}]}, "top_k 3 exceeds num_experts 2"),
    ({"num_experts": 2, "top_k": 1, "expert": [{"linear": {"out_features": 5}}]}, "experts gives 6x5 for tokens 6x4"),
])
def test_bad_input_is_one_line_exit_2(cli: Any, write: Any, moe: dict, message: str) -> None:
    text = f"input: [3, 4]\nbatch: 2\nlayers:\n  - moe: {moe}\n"
    run = cli("params", write("bad.yaml", text))
    assert run.status == 2 and run.out == ""
    assert run.err.count("\n") == 1 and message in run.err and "bad.yaml:4" in run.err and "moe 'moe1'" in run.err, run.err
    with pytest.raises(ConfigError):
        analyse({"input": [3, 4], "batch": 2, "layers": [{"moe": moe}]})


def test_by_type_and_verify_memory_count_every_expert() -> None:
    from layercalc.bytype import by_type
    from layercalc.verify.memory import held_params

    report = analyse({"input": [5, 4], "batch": 2, "layers": [MIXTRAL_TOY]})
    linear = next(r for r in by_type(report) if r["type"] == "linear")
    # the router and 4 experts' w1, w3, w2: 13 linears, 304 params; MACs as the total's, 1,600
    assert (linear["count"], linear["params"], linear["macs"]) == (13, 304, 1600)
    # a check holds every expert's weights as arrays
    assert held_params(report.entries[0]) == 304


def test_a_folded_repeat_of_moes_multiplies_held_and_runs() -> None:
    # 200 copies: moe.0 listed, moe.1-199 folded (199 runs); below it, not listed, the experts row
    # holds 199·4 = 796 expert copies and runs 199·2 = 398. Params 200·304 = 60,800; active 200·160
    report = analyse({"input": [5, 4], "batch": 2, "layers": [{**MIXTRAL_TOY, "repeat": 200, "name": "moe"}]})
    rows = {x.path: x for x in report.run_table}
    folded = rows["moe.1-199.experts.0-3"]
    assert (folded.held, folded.copies, folded.listed) == (796, 398, False)
    assert (report.total["params"], report.total["active_params"]) == (60_800, 32_000)
    assert report.total["macs"] == 200 * 1600


def test_train_counts_6nd_with_the_active_params(cli: Any, write: Any) -> None:
    import json

    # embedding 10·8 = 80, the toy mixture at E 8 (router 8·4 = 32, 4 experts of 8·8 = 64, top 2),
    # causal attention 4·64 = 256, head 80: params 80 + 32 + 256 + 256 + 80 = 704; active two experts
    # fewer, 576. Megatron's formula assumes a dense MLP: none for a mixture
    moe = {"moe": {"num_experts": 4, "top_k": 2, "expert": [{"linear": {"out_features": 8, "bias": False}}]}}
    config = {"input": [4], "layers": [{"embedding": {"num_embeddings": 10, "embedding_dim": 8}},
                                       {"attention": {"num_heads": 2}}, moe,
                                       {"linear": {"out_features": 10, "bias": False}}]}
    run = cli("train", write("moe.json", json.dumps(config)), "-f", "json")
    assert run.status == 0, run.err
    compute = json.loads(run.out)["compute"]
    assert compute["flops_6nd_per_token"] == 6 * 576 and compute["flops_megatron_per_step"] is None


# Routing set by hand: the gate is the identity on E 4 (logits = the token), and each token's
# features are 1 at its first expert, 0.5 at its second, below 0 elsewhere. Tokens' (first, second):
# (0, 1), (1, 2), (0, 2), (2, 0), (1, 0); expert 0 runs on tokens 0, 2, 3, 4, expert 1 on 0, 1, 4,
# expert 2 on 1, 2, 3, expert 3 on none
PAIRS = [(0, 1), (1, 2), (0, 2), (2, 0), (1, 0)]
ROUTED_ROWS = {"moe1.experts.0-3": [0, 2, 3, 4], "moe1.experts.1": [0, 1, 4], "moe1.experts.2": [1, 2, 3],
               "moe1.experts.3": []}
ROUTED_CONFIG = {"input": [5, 4], "batch": 1, "layers": [MIXTRAL_TOY]}


def routed() -> tuple[Any, Any]:
    """The toy mixture planned for verify, its gate the identity, and an input routed as PAIRS (1, 5, 4)."""
    from layercalc.verify import Options, plan

    root, _ = plan(analyse(ROUTED_CONFIG), Options(seed=3))
    gate = next(i for i in root.walk() if i.path == "moe1.gate")
    gate.params["weight"] = np.eye(4)
    x = np.random.default_rng(4).uniform(-1.0, -0.1, (1, 5, 4))
    for t, (first, second) in enumerate(PAIRS):
        x[0, t, first], x[0, t, second] = 1.0, 0.5
    return root, x


def test_an_expert_runs_on_the_tokens_routed_to_it_alone() -> None:
    """Every layer of an expert sees its routed tokens' rows, no others (none for expert 3); the
    router sees every token, the expert's first layers exactly the routed tokens."""
    from layercalc.verify import forward

    root, x = routed()
    seen: dict[str, list[Any]] = {}
    forward(root, x, watch=lambda inst, h: seen.setdefault(inst.path, []).append(h.copy()))
    assert [len(h) for h in seen.pop("moe1.gate")] == [5]
    tokens = x.reshape(5, 4)
    for expert, rows in ROUTED_ROWS.items():
        for layer in ("0.branches.0.w1", "0.branches.0.1", "0.branches.1.w3", "w2"):  # the silu at .1
            assert [len(h) for h in seen.pop(f"{expert}.{layer}")] == [len(rows)], (expert, layer)
    assert not seen
    root2, _ = routed()
    firsts: dict[str, Any] = {}
    forward(root2, x, watch=lambda inst, h: firsts.setdefault(inst.path, h.copy()))
    for expert, rows in ROUTED_ROWS.items():
        np.testing.assert_array_equal(firsts[f"{expert}.0.branches.0.w1"], tokens[rows])


def test_routed_experts_match_torch_an_idle_expert_gets_zero_gradients() -> None:
    """Output, dL/dx and every parameter's gradient against tests/torch_models.py's SparseMoe (Mixtral's
    loop over experts) in float64 on the routing above: expert 3 runs on no token, its gradients are 0."""
    torch = pytest.importorskip("torch")
    import torch_models
    from layercalc.verify import backward, forward

    root, x = routed()
    y, cache = forward(root, x)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    grads: dict = {}
    dx = backward(root, dy, cache, grads)
    model, _ = torch_models.build(ROUTED_CONFIG)
    model = model.double()
    ours, theirs = root.all_params(), list(model.parameters())
    assert len(ours) == len(theirs)
    with torch.no_grad():
        for (_, _, arr), p in zip(ours, theirs):
            p.copy_(torch.tensor(arr))
    tx = torch.tensor(x, requires_grad=True)
    model(tx).backward(torch.tensor(dy))
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(y, model(tx).detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    for (owner, name, arr), p in zip(ours, theirs):
        want = p.grad.numpy() if p.grad is not None else np.zeros_like(arr)  # torch skips an expert with no token
        np.testing.assert_allclose(grads[owner][name], want, **tol, err_msg=f"{owner.path}.{name}")
        if owner.path.startswith("moe1.experts.3."):
            assert not grads[owner][name].any()


def test_verify_checks_a_moe_with_idle_experts_as_a_dense_pass_would() -> None:
    """8 experts, top 1, 3 tokens: at least 5 experts run on no token. The expert's layers and block
    get the rows a pass over all the tokens gives them (checked at their calculated input, 3 tokens),
    and everything passes, in float64 and float32."""
    from layercalc.verify import Options, verify

    config = {"input": [3, 4], "batch": 1, "layers": [{"moe": {"num_experts": 8, "top_k": 1, "expert": SWIGLU}}]}
    for dtype in ("float64", "float32"):
        result = verify(analyse(config), Options(dtype=dtype))
        assert all(c.passed for c in result.checks), [c for c in result.checks if not c.passed]
        rows: dict[str, set[str]] = {}
        for c in result.checks:
            rows.setdefault(c.path, set()).add(c.check)
        assert rows["moe1.experts.0-7"] == rows["moe1.experts.0-7.0"] == {"output shape", "params", "split = merge's gradient"}
        assert {"output shape", "params"} < rows["moe1.experts.0-7.w2"]  # checked at 3 tokens, not its routed ones
        assert "split = merge's gradient" in rows["moe1"] and "output shape" in rows["(network)"]


def test_a_kink_watch_sees_a_layer_given_other_rows_as_a_crossing() -> None:
    """A step that changes the routing hands a kinked layer of an expert another number of rows: the
    watch calls that a crossing (the step is cut), rather than comparing arrays of two shapes."""
    from layercalc.verify.differences import KinkWatch

    class Relu:
        kinks = (0.0,)

    class Leaf:
        layer = Relu()

    watch, leaf = KinkWatch(), Leaf()
    watch(leaf, np.ones((3, 4)))
    watch.recording = False
    watch(leaf, np.ones((2, 4)))
    assert watch.crossed


def test_a_users_layer_inside_an_expert_is_held_to_its_routed_rows() -> None:
    """--impl of a layer inside the experts: its forward is handed the routed tokens' rows, and the
    shape it must return is its calculated one with those rows; everything passes."""
    from layercalc.layers import REGISTRY
    from layercalc.verify import Options, verify

    class PlainSilu(REGISTRY["silu"]):
        def forward(self, x, params):
            return x / (1 + np.exp(-x)), x

        def backward(self, dy, params, x):
            s = 1 / (1 + np.exp(-x))
            return dy * s * (1 + x * (1 - s)), {}

    result = verify(analyse({"input": [5, 4], "batch": 2, "layers": [MIXTRAL_TOY]}), Options(impl=PlainSilu))
    assert all(c.passed for c in result.checks), [c for c in result.checks if not c.passed]
    assert {c.check for c in result.checks if c.path == "moe1.experts.0-3.0.branches.0.1"} >= {"output shape", "forward = reference"}
