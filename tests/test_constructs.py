"""Small constructs of real models: scale and shift (learned vectors over one dim), layernorm2d,
narrow, softplus, multiply's broadcasting (squeeze-excitation) and posembedding's offset (OPT).

Expected numbers are worked out by hand (the arithmetic is written out); the NumPy forward and
backward of each row is compared with torch autograd, each peer convention with the real tool.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from layercalc import analyse
from layercalc.verify import Options, backward, forward, plan
from test_layers import CASE_FIELDS, check_case

SE = {"multiply": {"branches": [[{"adaptiveavgpool2d": {"output_size": 1}},
                                 {"conv2d": {"out_channels": 4, "kernel_size": 1}}, "sigmoid"], []]}}

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # scale over the channels of (N, C, H, W): one weight per channel (C = 4), stored (4, 1, 1); no MACs
    ({"scale": {"dim": 1}}, (2, 4, 3, 3), (2, 4, 3, 3), 4, 0, 0),
    # scale over the last dim E = 5 of (N, T, E)
    ("scale", (2, 3, 5), (2, 3, 5), 5, 0, 0),
    # shift: one bias per position of the last dim E = 4
    ("shift", (2, 5, 4), (2, 5, 4), 4, 0, 0),
    # shift over dim 1 (3 rows) of (N, 3, 6), stored (3, 1)
    ({"shift": {"dim": 1}}, (2, 3, 6), (2, 3, 6), 3, 0, 0),
    # BERT's token types: a table of 2 rows of E = 4, the first added to every token: 2·4
    ({"shift": {"rows": 2}}, (2, 5, 4), (2, 5, 4), 2 * 4, 0, 0),
    # layernorm2d over C = 4 channels: weight 4 + bias 4
    ("layernorm2d", (2, 4, 3, 3), (2, 4, 3, 3), 2 * 4, 0, 0),
    ({"layernorm2d": {"eps": 1e-5}}, (1, 6, 2, 5), (1, 6, 2, 5), 2 * 6, 0, 0),
    # narrow dim 1 from 1, 3 long: 6 -> 3
    ({"narrow": {"dim": 1, "start": 1, "length": 3}}, (2, 6, 4), (2, 3, 4), 0, 0, 0),
    # a negative start counts back: the last dim of 5, from 5 - 3 = 2, 2 long
    ({"narrow": {"dim": -1, "start": -3, "length": 2}}, (2, 3, 5), (2, 3, 2), 0, 0, 0),
    ("softplus", (2, 7), (2, 7), 0, 0, 0),
    # beta 2, threshold 1: the identity where 2x > 1
    ({"softplus": {"beta": 2.0, "threshold": 1.0}}, (3, 6), (3, 6), 0, 0, 0),
    # squeeze-excitation: pool to (2, 4, 1, 1), a 1x1 conv 4 -> 4 (16 + 4 params, 2·4·4 = 32 MACs),
    # sigmoid; times x (2, 4, 3, 3): the (2, 4, 1, 1) factor broadcast over H and W
    (SE, (2, 4, 3, 3), (2, 4, 3, 3), 4 * 4 + 4, 0, 2 * 4 * 4),
    # the other way round and over the last dim: linear 4 -> 1 (4 + 1 params, 2·3·4 = 24 MACs) gives
    # (2, 3, 1), broadcast over E = 4 of (2, 3, 4)
    ({"multiply": {"branches": [[], [{"linear": {"out_features": 1}}]]}}, (2, 3, 4), (2, 3, 4), 5, 0, 2 * 3 * 4),
    # OPT's positions: rows 2..6 of an 8-row table for T = 5 (8 ≥ 5 + 2); 8·4 params
    ({"posembedding": {"num_positions": 8, "offset": 2}}, (2, 5, 4), (2, 5, 4), 8 * 4, 0, 0),
    # num_positions null = T + offset = 3 + 1 rows
    ({"posembedding": {"offset": 1}}, (2, 3, 4), (2, 3, 4), 4 * 4, 0, 0),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_hand_computed_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def test_scale_stores_its_vector_broadcastable() -> None:
    """ConvNeXt's gamma is (C, 1, 1): the vector lines up with dim 1 of (N, C, H, W) by broadcasting."""
    from layercalc.layers import REGISTRY

    assert REGISTRY["scale"](dim=1).param_shapes((2, 4, 3, 3)) == {"weight": (4, 1, 1)}
    assert REGISTRY["shift"](dim=-1).param_shapes((2, 3, 6)) == {"bias": (6,)}


def test_softplus_is_linear_above_the_threshold() -> None:
    """PyTorch's softplus: log(1 + e^(beta·x)) / beta, x itself where beta·x > threshold."""
    from layercalc.layers import REGISTRY

    layer = REGISTRY["softplus"](beta=2.0, threshold=1.0)
    x = np.array([[-1.0, 0.25, 0.75, 30.0]])
    y, cache = layer.forward(x, {})
    # by hand: ln(1 + e^-2)/2 = 0.0635, ln(1 + e^0.5)/2 = 0.4870; 0.75 and 30 are past 1/2: themselves
    np.testing.assert_allclose(y, [[0.063464, 0.487038, 0.75, 30.0]], atol=1e-6)
    dx, _ = layer.backward(np.ones_like(x), {}, cache)
    # sigmoid(2x) below the threshold: sigmoid(-2) = 0.1192, sigmoid(0.5) = 0.6225; 1 above
    np.testing.assert_allclose(dx, [[0.119203, 0.622459, 1.0, 1.0]], atol=1e-6)
    assert layer.kinks == (0.5,)


def test_multiply_gradient_is_summed_over_broadcast_dims() -> None:
    """The (N, C, 1, 1) factor of a squeeze-excitation gets dy·x summed over H and W."""
    report = analyse({"input": [4, 3, 3], "batch": 2, "layers": [SE]})
    root, _ = plan(report, Options(seed=3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 3))
    y, cache = forward(root, x)
    grads: dict = {}
    dx = backward(root, np.ones_like(y), cache, grads)
    assert dx.shape == x.shape
    eps = 1e-6
    for index in [(0, 1, 2, 0), (1, 3, 0, 2)]:  # central differences of sum(y)
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (forward(root, up)[0].sum() - forward(root, down)[0].sum()) / (2 * eps)
        assert abs(dx[index] - numeric) < 1e-6


HEAD = "input: [8, 6]\nlayers:\n  - linear: {out_features: 6}\n"


@pytest.mark.parametrize("text, message", [
    (HEAD + "  - narrow: {dim: 1, start: 6, length: 3}\n",
     "net.yaml:4: layers[1] (narrow 'narrow1'): start 6 + length 3 exceeds dim 1 of size 8"),
    (HEAD + "  - narrow: {dim: 2, start: -7, length: 1}\n",
     "net.yaml:4: layers[1] (narrow 'narrow1'): start -7 is out of range for dim 2 of size 6"),
    (HEAD + "  - narrow: {dim: 0, start: 0, length: 1}\n",
     "net.yaml:4: layers[1] (narrow 'narrow1'): dim 0 is the batch dimension of 1x8x6; it must stay first"),
    (HEAD + "  - scale: {dim: 3}\n",
     "net.yaml:4: layers[1] (scale 'scale1'): dim 3 is out of range for 3-D input 1x8x6"),
    (HEAD + "  - shift: {dim: 0}\n",
     "net.yaml:4: layers[1] (shift 'shift1'): dim 0 is the batch dimension of 1x8x6; a learned vector cannot run"
     " over the batch"),
    (HEAD + "  - layernorm2d\n",
     "net.yaml:4: layers[1] (layernorm2d 'layernorm2d1'): expects input (N, C, H, W), got 1x8x6"),
    (HEAD + "  - posembedding: {num_positions: 9, offset: 2}\n",
     "net.yaml:4: layers[1] (posembedding 'posembedding1'): sequence length 8 + offset 2 exceeds num_positions 9"
     " (input 1x8x6)"),
    (HEAD + "  - multiply: {branches: [[{linear: {out_features: 4}}], []]}\n",
     "net.yaml:4: layers[1] (multiply 'multiply1'): branch 1 gives 1x8x6 but branch 0 gives 1x8x4; multiply"
     " broadcasts as PyTorch does: from the last dim, sizes must be equal or 1"),
    (HEAD + "  - multiply: {branches: [[{linear: {out_features: 1}}], [{mean: {dim: 1, keepdim: true}}], "
     "[{narrow: {dim: 1, start: 0, length: 2}}]]}\n",
     "net.yaml:4: layers[1] (multiply 'multiply1'): branch 2 gives 1x2x6 but branch 0 gives 1x8x1; multiply"
     " broadcasts as PyTorch does: from the last dim, sizes must be equal or 1"),
])
def test_bad_input_is_one_line_exit_2(cli, write, text: str, message: str) -> None:
    path = write("net.yaml", text)
    run = cli("summary", path)
    assert run.status == 2 and run.out == ""
    assert run.err.startswith("error: ") and run.err.rstrip("\n").endswith(message), run.err
    assert run.err.count("\n") == 1


def test_verify_passes_and_names_the_new_parameters(cli, write) -> None:
    config = ("input: [4, 5, 5]\nbatch: 2\nlayers:\n  - layernorm2d\n  - scale: {dim: 1}\n"
              f"  - multiply: {{branches: [[{{adaptiveavgpool2d: {{output_size: 1}}}}, softplus], []]}}\n"
              "  - narrow: {dim: 2, start: 1, length: 3}\n  - flatten: {start_dim: 2}\n  - shift\n")
    run = cli("verify", write("ok.yaml", config), "-f", "tsv")
    assert run.status == 0, run.out
    checks = {r["path"]: r["check"] for r in csv.DictReader(io.StringIO(run.out), delimiter="\t")
              if r["check"].startswith("dL/d")}
    assert (checks["layernorm2d1"], checks["scale1"], checks["shift1"]) == (
        "dL/d(x, weight, bias)", "dL/d(x, weight)", "dL/d(x, bias)")


# -- against PyTorch ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple[int, ...]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torch_models")
    from test_reference_torch import test_forward_and_backward_match_torch as check

    check(entry, x_shape)


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:50])
def test_each_convention_matches_the_real_tool(entry: object, x_shape: tuple[int, ...]) -> None:
    pytest.importorskip("torch")
    from layercalc.conventions import Costing
    from peer_tools import TOOLS, tool_total

    config = {"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]}
    report = analyse(config)
    for tool in TOOLS:
        assert (Costing(report, tool).total() or 0) == tool_total(tool, config), tool
