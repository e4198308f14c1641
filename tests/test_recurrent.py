"""lstm, gru and rnn: hand-computed params, shapes and MACs; NumPy forward and backpropagation
through time against torch autograd; each peer tool's count and --training against the real tools
on nn.LSTM / nn.GRU / nn.RNN (batch_first=True); verify, a planted BPTT bug, and bad input.

Notation in the arithmetic: N batch, T steps, F features in, H hidden_size, P proj_size, D
directions, G gates (lstm 4, gru 3, rnn 1). Per layer and direction PyTorch holds weight_ih
(G·H, F_k), weight_hh (G·H, P or H), bias_ih and bias_hh (G·H each), weight_hr (P, H); F_k is F for
the first layer, D·(P or H) above it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from layercalc import analyse
from layercalc.conventions import training
from layercalc.errors import SchemaError, ShapeError
from layercalc.verify import Options, for_dtype, verify
from test_layers import CASE_FIELDS, calc, check_case

ROOT = Path(__file__).resolve().parent.parent
IMPLS = Path(__file__).resolve().parent / "impls"

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # lstm F=3, H=4: 4·4·3 + 4·4·4 + 2·(4·4) = 48 + 64 + 32 = 144; macs N·T·4H(F+H) = 2·5·16·7
    ({"lstm": {"hidden_size": 4}}, (2, 5, 3), (2, 5, 4), 48 + 64 + 32, 0, 2 * 5 * 16 * 7),
    # 2 layers, bidirectional: layer 0 (48 + 64 + 32)·2 = 288; layer 1 reads D·H = 8:
    # (16·8 + 16·4 + 32)·2 = 448. macs N·T·D·[16·(3+4) + 16·(8+4)] = 1·5·2·(112 + 192)
    ({"lstm": {"hidden_size": 4, "num_layers": 2, "bidirectional": True}}, (1, 5, 3), (1, 5, 8),
     288 + 448, 0, 1 * 5 * 2 * (112 + 192)),
    # proj_size 2, 2 layers, bidirectional; output D·P = 4. Layer 0: w_ih 16·3 + w_hh 16·2 + biases 32
    # + w_hr 2·4 = 120 per direction; layer 1 reads D·P = 4: 16·4 + 32 + 32 + 8 = 136 per direction.
    # macs per step 4H(F+P) + H·P: 16·(3+2) + 8 = 88 and 16·(4+2) + 8 = 104; times N·T·D = 2·5·2
    ({"lstm": {"hidden_size": 4, "num_layers": 2, "bidirectional": True, "proj_size": 2}}, (2, 5, 3), (2, 5, 4),
     2 * 120 + 2 * 136, 0, 2 * 5 * 2 * (88 + 104)),
    # proj_size 3, 3 layers, one direction, no biases: each layer 16·3 + 16·3 + 3·4 = 108 (F = P = 3);
    # macs 16·(3+3) + 4·3 = 108 per layer and step, times N·T = 2·5
    ({"lstm": {"hidden_size": 4, "num_layers": 3, "proj_size": 3, "bias": False}}, (2, 5, 3), (2, 5, 3),
     3 * 108, 0, 2 * 5 * 3 * 108),
    # gru F=3, H=4: 12·3 + 12·4 + 2·12 = 108; macs N·T·3H(F+H) = 2·5·12·7
    ({"gru": {"hidden_size": 4}}, (2, 5, 3), (2, 5, 4), 36 + 48 + 24, 0, 2 * 5 * 12 * 7),
    # gru H=5, 2 layers, bidirectional, no biases: layer 0 (15·3 + 15·5)·2 = 240; layer 1 (15·10 + 75)·2 = 450;
    # macs N·T·D·[15·(3+5) + 15·(10+5)] = 2·5·2·(120 + 225)
    ({"gru": {"hidden_size": 5, "num_layers": 2, "bidirectional": True, "bias": False}}, (2, 5, 3), (2, 5, 10),
     240 + 450, 0, 2 * 5 * 2 * (120 + 225)),
    # one step: T = 1, gru 3·2·(4 + 2) + 2·6 = 48; macs 3·1·6·6
    ({"gru": {"hidden_size": 2}}, (3, 1, 4), (3, 1, 2), 6 * 4 + 6 * 2 + 12, 0, 3 * 1 * 6 * 6),
    # rnn relu F=3, H=4: 4·3 + 4·4 + 2·4 = 36; macs N·T·H(F+H) = 2·5·4·7
    ({"rnn": {"hidden_size": 4, "nonlinearity": "relu"}}, (2, 5, 3), (2, 5, 4), 12 + 16 + 8, 0, 2 * 5 * 4 * 7),
    # rnn tanh, 2 layers, bidirectional: layer 0 (12 + 16 + 8)·2 = 72; layer 1 (4·8 + 16 + 8)·2 = 112;
    # macs N·T·D·[4·(3+4) + 4·(8+4)] = 1·5·2·(28 + 48)
    ({"rnn": {"hidden_size": 4, "num_layers": 2, "bidirectional": True}}, (1, 5, 3), (1, 5, 8),
     72 + 112, 0, 1 * 5 * 2 * (28 + 48)),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_hand_computed_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


# -- everything below compares with PyTorch (the rows and hand counts above need no torch) ----------

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("torch_models")
from test_conventions import TOOLS, matches_each_tool, ours, tool_total  # noqa: E402
from test_reference_torch import test_forward_and_backward_match_torch as against_torch  # noqa: E402
from test_torch_crosscheck import compare, recurrent_config  # noqa: E402


@pytest.mark.parametrize("entry, x", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:50])
def test_numbers_match_pytorch(entry: object, x: tuple) -> None:
    """Params, shapes and MACs against nn.LSTM/GRU/RNN (FlopCounterMode with oneDNN off for lstm)."""
    compare({"input": list(x[1:]), "batch": x[0], "layers": [entry]})


def test_parameter_names_and_shapes_are_pytorchs() -> None:
    config = {"input": [5, 3], "batch": 2, "layers": [{"lstm": {"hidden_size": 4, "num_layers": 2,
                                                                  "bidirectional": True, "proj_size": 2}}]}
    report = analyse(config)
    layer, x = report.entries[0].layer, report.entries[0].input_shape
    model, _ = torch_models.build(config)
    theirs = [(name.removeprefix("0.rnn."), tuple(p.shape)) for name, p in model.named_parameters()]
    assert list(layer.param_shapes(x).items()) == theirs
    assert theirs[:5] == [("weight_ih_l0", (16, 3)), ("weight_hh_l0", (16, 2)), ("bias_ih_l0", (16,)),
                          ("bias_hh_l0", (16,)), ("weight_hr_l0", (2, 4))]


# -- NumPy forward and backward --------------------------------------------------------------------

FORWARD_BACKWARD = [(c[0], c[1]) for c in CASES] + [
    # longer sequences through stacked bidirectional layers, a projection, relu's kinks
    ({"lstm": {"hidden_size": 3, "num_layers": 2, "bidirectional": True, "proj_size": 2}}, (3, 9, 4)),
    ({"gru": {"hidden_size": 3, "num_layers": 3, "bidirectional": True}}, (2, 8, 2)),
    ({"rnn": {"hidden_size": 6, "num_layers": 2, "nonlinearity": "relu", "bias": False}}, (2, 7, 3)),
]


@pytest.mark.parametrize("entry, x", FORWARD_BACKWARD, ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch_autograd(entry: object, x: tuple) -> None:
    against_torch(entry, x)


def test_float32_runs_in_float32() -> None:
    from layercalc.verify.execution import forward
    from layercalc.verify import plan

    for entry, x_shape, *_ in CASES:
        root, _ = plan(analyse({"input": list(x_shape[1:]), "batch": x_shape[0], "layers": [entry]}), for_dtype("float32"))
        y, _ = forward(root, np.random.default_rng(0).standard_normal(x_shape).astype("float32"))
        assert y.dtype == np.float32, entry


@pytest.mark.parametrize("entry, x", FORWARD_BACKWARD, ids=lambda v: str(v)[:50])
def test_verify_passes(entry: object, x: tuple) -> None:
    text = {"input": list(x[1:]), "batch": x[0], "layers": [{"linear": {"out_features": 3}}, entry, "tanh"]}
    result = verify(analyse(text), Options(seed=1))
    assert result.passed, [c for c in result.checks if not c.passed]


VERIFY_NET = (
    "input: [6, 3]\nbatch: 2\nlayers:\n  - linear: {out_features: 4}\n"
    "  - lstm: {hidden_size: 5, num_layers: 2, bidirectional: true}\n    name: tagger\n"
    "  - linear: {out_features: 2}\n"
)


def failures(out: str) -> list[dict[str, str]]:
    return [r for r in csv.DictReader(io.StringIO(out), delimiter="\t") if r["passed"] != "True"]


def test_verify_catches_an_lstm_backward_without_the_forget_gate_carry(cli, write) -> None:
    # dL/dc_{t-1} = dL/dc_t · f_t dropped: every gradient that flows along the cell state is lost
    run = cli("verify", write("tagger.yaml", VERIFY_NET), "--impl", str(IMPLS / "lstm_no_forget_carry.py"), "-f", "tsv")
    assert run.status == 1, run.err
    failed = {(r["path"], r["check"]) for r in failures(run.out)}
    assert ("tagger", "dL/dx") in failed and ("tagger", "dL/dx = reference") in failed
    assert {path for path, _ in failed} == {"tagger", "(network)"}  # the linear layers around it pass


def test_the_reference_lstm_passed_as_impl_passes(cli, write) -> None:
    run = cli("verify", write("tagger.yaml", VERIFY_NET), "--impl", "layercalc.layers.recurrent:LSTM", "-f", "tsv")
    assert run.status == 0 and failures(run.out) == []


# -- peer tools ------------------------------------------------------------------------------------

# N=2, T=5, F=3, H=4, biases on. Each tool's rule written out (MACs; FlopCounterMode's FLOPs / 2):
PEERS = [
    # lstm, 1 layer: torch's fused CPU kernel counts nothing; thop per step 4·((F+H)·H + H + 2H) + 3H + H
    # = 4·(28 + 4 + 8) + 16 = 176; ptflops per sample and step w_ih 48 + w_hh 64 + gates 10H + biases 32
    # = 184 (its module hooks' count is divided by N); torchinfo N·T·params = 10·144
    ({"lstm": {"hidden_size": 4}},
     {"layercalc": 1120, "torch": 0, "fvcore": 0, "thop": 10 * 176, "ptflops": 5 * 184, "torchinfo": 10 * 144}),
    # lstm, 2 layers, bidirectional, proj_size 2: torch counts the products 2·5·2·(88 + 104); thop
    # ignores the projection: 16·F' + 128 per cell with F' = 3, then D·H = 8 (not D·P = 4):
    # 2·(176 + 256)·10; ptflops layer 0: 48 + 32 + 40 + 32 = 152, layer 1: 64 + 32 + 40 + 32 = 168,
    # (152 + 168)·T·D, no weight_hr; torchinfo 10·(2·120 + 2·136)
    ({"lstm": {"hidden_size": 4, "num_layers": 2, "bidirectional": True, "proj_size": 2}},
     {"layercalc": 3840, "torch": 3840, "fvcore": 0, "thop": 2 * (176 + 256) * 10, "ptflops": (152 + 168) * 10,
      "torchinfo": 10 * 512}),
    # gru, 2 layers, bidirectional: thop 3·((F'+H)·H + H + 2H) + H + 3H = 12·F' + 100: 136, 196;
    # ptflops w_ih + w_hh + 7H + biases: 36 + 48 + 28 + 24 = 136, 96 + 48 + 28 + 24 = 196;
    # torchinfo params (36 + 48 + 24)·2 + (96 + 48 + 24)·2 = 552
    ({"gru": {"hidden_size": 4, "num_layers": 2, "bidirectional": True}},
     {"layercalc": 2 * 5 * 2 * (84 + 144), "torch": 2 * 5 * 2 * (84 + 144), "fvcore": 0,
      "thop": 2 * (136 + 196) * 10, "ptflops": (136 + 196) * 10, "torchinfo": 10 * 552}),
    # rnn, 2 layers, bidirectional: thop H·(F'+H) + H + 2H = 4·F' + 28: 40, 60; ptflops w_ih + w_hh + H
    # + biases: 12 + 16 + 4 + 8 = 40, 32 + 16 + 4 + 8 = 60; torchinfo params 72 + 112
    ({"rnn": {"hidden_size": 4, "num_layers": 2, "bidirectional": True}},
     {"layercalc": 2 * 5 * 2 * (28 + 48), "torch": 2 * 5 * 2 * (28 + 48), "fvcore": 0,
      "thop": 2 * (40 + 60) * 10, "ptflops": (40 + 60) * 10, "torchinfo": 10 * 184}),
]


@pytest.mark.parametrize("entry, expected", PEERS, ids=lambda v: str(v)[:50])
def test_each_tool_by_hand_and_by_the_tool(entry: object, expected: dict[str, int]) -> None:
    config = {"input": [5, 3], "batch": 2, "layers": [entry]}
    assert {c: ours(config, c) for c in expected} == expected
    assert {t: tool_total(t, config) for t in TOOLS} == {t: expected[t] for t in TOOLS}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(recurrent_config())
def test_random_sequence_models_match_each_tool(config: dict[str, Any]) -> None:
    matches_each_tool(config)


# -- training --------------------------------------------------------------------------------------


def counted_training_flops(config: dict[str, Any], fused: bool) -> int:
    """FlopCounterMode over a forward and backward pass (input without gradient), oneDNN on or off."""
    import warnings

    from torch.utils.flop_counter import FlopCounterMode

    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=fused), counter:
            model(torch_models.example(model, shape)).sum().backward()
    return counter.get_total_flops()


def test_backward_by_hand() -> None:
    # gru F=3, H=4, N=2, T=5 as the first layer: weight gradients cost a forward, 2·5·12·7 = 840;
    # no dL/dx through W_ih (the input needs none); dL/dh_{t-1} through W_hh for t >= 1 only (h_0 is
    # a constant): N·(T-1)·3H·H = 2·4·12·4 = 384
    config = {"input": [5, 3], "batch": 2, "layers": [{"gru": {"hidden_size": 4}}]}
    assert training(analyse(config), "layercalc")["backward_macs"] == 840 + 384
    # after a linear layer (3 -> 3) the input needs a gradient: + N·T·3H·F = 2·5·12·3 = 360, and the
    # linear layer's weight gradient 2·5·3·3 = 90
    config["layers"].insert(0, {"linear": {"out_features": 3, "bias": False}})
    assert training(analyse(config), "layercalc")["backward_macs"] == 840 + 384 + 360 + 90
    # lstm with a projection, P=2: also dL/dm through W_hr at every step, N·T·H·P = 2·5·8
    config = {"input": [5, 3], "batch": 2, "layers": [{"lstm": {"hidden_size": 4, "proj_size": 2}}]}
    forward = 2 * 5 * (16 * (3 + 2) + 8)
    assert training(analyse(config), "layercalc")["backward_macs"] == forward + 2 * 4 * 16 * 2 + 2 * 5 * 8


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(recurrent_config())
def test_training_matches_flopcountermode_forward_and_backward(config: dict[str, Any]) -> None:
    # 'torch' as users run it (an lstm without projection counts 0); 'layercalc' as FlopCounterMode
    # counts the same network run as matrix products (oneDNN off)
    assume(any(isinstance(e, dict) and next(iter(e)) in ("lstm", "gru", "rnn") for e in config["layers"]))
    try:
        report = analyse(config)
        torch_models.build(config)
    except Exception:
        assume(False)
    assert training(report, "torch")["training_flops"] == counted_training_flops(config, fused=True)
    assert training(report, "layercalc")["training_flops"] == counted_training_flops(config, fused=False)


@pytest.mark.parametrize("name", ["lstm_tagger", "gru_classifier", "lstm_lm"])
def test_shipped_configs_training_matches_flopcountermode(name: str) -> None:
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    config["batch"] = 2
    report = analyse(config)
    assert training(report, "torch")["training_flops"] == counted_training_flops(config, fused=True)
    assert training(report, "layercalc")["training_flops"] == counted_training_flops(config, fused=False)


# -- shipped configs -------------------------------------------------------------------------------


def test_lstm_tagger_by_hand() -> None:
    total = analyse(ROOT / "configs" / "lstm_tagger.yaml").total
    # F=40, H=256, 2 layers, bidirectional, then linear 512 -> 48; N=8, T=300
    layer0 = 2 * (1024 * 40 + 1024 * 256 + 2 * 1024)
    layer1 = 2 * (1024 * 512 + 1024 * 256 + 2 * 1024)
    assert total["params"] == layer0 + layer1 + 512 * 48 + 48 == 2_211_888
    steps = 8 * 300
    assert total["macs"] == steps * 2 * (1024 * (40 + 256) + 1024 * (512 + 256)) + steps * 512 * 48


def test_gru_classifier_by_hand() -> None:
    total = analyse(ROOT / "configs" / "gru_classifier.yaml").total
    # F=9, H=64 (3H = 192), 2 layers, bidirectional; mean over time; linear 128 -> 6; N=16, T=128
    layer0 = 2 * (192 * 9 + 192 * 64 + 2 * 192)
    layer1 = 2 * (192 * 128 + 192 * 64 + 2 * 192)
    assert total["params"] == layer0 + layer1 + 128 * 6 + 6 == 104_070
    assert total["macs"] == 16 * 128 * 2 * (192 * (9 + 64) + 192 * (128 + 64)) + 16 * 128 * 6 == 208_416_768


def test_lstm_language_model_by_hand() -> None:
    total = analyse(ROOT / "configs" / "lstm_lm.yaml").total
    # embedding 10,000 x 650; 2 LSTM layers of 650 (4H = 2600) reading 650; the decoder's weight is
    # the embedding's (counted once), its bias 10,000; N=20, T=35
    lstm = 2 * (2600 * 650 + 2600 * 650 + 2 * 2600)
    assert total["params"] == 10_000 * 650 + lstm + 10_000 == 13_280_400
    assert total["macs"] == 20 * 35 * (2 * 2600 * (650 + 650) + 650 * 10_000) == 9_282_000_000


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, x, error, fragment",
    [
        ({"lstm": {"hidden_size": 4, "proj_size": 4}}, (1, 5, 3), SchemaError, "proj_size 4 must be smaller than hidden_size 4"),
        ({"lstm": {"hidden_size": 4, "proj_size": 9}}, (1, 5, 3), SchemaError, "proj_size 9 must be smaller"),
        ({"lstm": {"hidden_size": 4, "proj_size": -1}}, (1, 5, 3), SchemaError, "proj_size: expected an integer >= 0"),
        ({"gru": {"hidden_size": 4}}, (1, 3, 5, 5), ShapeError, "expects input (N, T, features), got 1x3x5x5"),
        ({"rnn": {"hidden_size": 4}}, (1, 5), ShapeError, "expects input (N, T, features), got 1x5"),
        ({"rnn": {"hidden_size": 4, "nonlinearity": "sigmoid"}}, (1, 5, 3), SchemaError, "expected one of tanh, relu"),
        ({"gru": {"hidden_size": 4, "nonlinearity": "relu"}}, (1, 5, 3), SchemaError, "unknown argument 'nonlinearity'"),
        ({"lstm": {"hidden_size": 0}}, (1, 5, 3), SchemaError, "hidden_size: expected an integer >= 1"),
        ({"lstm": {"hidden_size": 4, "batch_first": False}}, (1, 5, 3), SchemaError, "batch_first false"),
        ({"lstm": {"hidden_size": 4, "input_size": 4}}, (1, 5, 3), ShapeError, "input_size 4 does not match the input's 3"),
    ],
)
def test_bad_input(entry: object, x: tuple, error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        calc(entry, x)
    assert fragment in str(info.value)


def test_bad_input_is_one_line_naming_file_line_and_layer(cli, write) -> None:
    path = write("bad.yaml", "input: [3, 8, 8]\nlayers:\n  - relu\n  - lstm: {hidden_size: 8}\n    name: enc\n")
    run = cli("summary", path)
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: {path}:4: layers[1] (lstm 'enc'): expects input (N, T, features), got 1x3x8x8\n"
    path = write("proj.yaml", "input: [5, 3]\nlayers:\n  - lstm: {hidden_size: 8, proj_size: 8}\n")
    run = cli("params", path)
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: {path}:3: layers[0] (lstm 'lstm1'): proj_size 8 must be smaller than hidden_size 8\n"
