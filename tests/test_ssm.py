"""mamba (Hugging Face's MambaMixer): hand-computed params, shapes and MACs; the NumPy forward and
backward through the selective scan against torch autograd on transformers' own MambaMixer; each
peer tool's count, --training and the parameter names against the real tools; verify.

Notation in the arithmetic: N batch, T steps, E width, D = expand·E inner channels, n = d_state,
R = dt_rank (⌈E/16⌉ when null), K = d_conv. Params E·2D (+ 2D with bias) + D·K (+ D with conv_bias)
+ D·(R + 2n) + R·D + D + D·n + D + D·E (+ E with bias); MACs N·[T·E·2D + (T + K - 1)·D·K +
T·D·(R + 2n) + T·R·D + T·D·n + T·D·E].
"""

from __future__ import annotations

from typing import Any

import pytest

from layercalc import analyse
from layercalc.conventions import Costing, training
from layercalc.verify import Options, verify
from test_layers import calc

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # E 8, D 16, R ⌈8/16⌉ = 1, n 4, K 4. params: in_proj 32·8 = 256, conv1d 16·4 + 16 = 80, x_proj
    # (1 + 8)·16 = 144, dt_proj 16·1 + 16 = 32, A_log 16·4 = 64, D 16, out_proj 8·16 = 128: 720.
    # macs N·[5·8·32 + (5 + 3)·16·4 + 5·16·9 + 5·1·16 + 5·16·4 + 5·16·8] = 2·(1280 + 512 + 720 + 80 + 320 + 640)
    ({"mamba": {"d_state": 4}}, (2, 5, 8), (2, 5, 8), 256 + 80 + 144 + 32 + 64 + 16 + 128, 0,
     2 * (1280 + 512 + 720 + 80 + 320 + 640)),
    # E 4, expand 1: D 4, R 2, n 3, K 3, biases on in_proj and out_proj, none on conv1d. params:
    # in_proj 8·4 + 8 = 40, conv1d 4·3 = 12, x_proj (2 + 6)·4 = 32, dt_proj 4·2 + 4 = 12, A_log 12, D 4,
    # out_proj 4·4 + 4 = 20: 132. macs 6·4·8 + (6 + 2)·4·3 + 6·4·8 + 6·2·4 + 6·4·3 + 6·4·4
    ({"mamba": {"d_state": 3, "d_conv": 3, "expand": 1, "dt_rank": 2, "conv_bias": False, "bias": True}},
     (1, 6, 4), (1, 6, 4), 40 + 12 + 32 + 12 + 12 + 4 + 20, 0, 192 + 96 + 192 + 48 + 72 + 96),
    # E 20: R = ⌈20/16⌉ = 2 (rounded up); expand 1: D 20, n 2, K 4. params in_proj 40·20 = 800, conv1d
    # 20·4 + 20 = 100, x_proj (2 + 4)·20 = 120, dt_proj 20·2 + 20 = 60, A_log 40, D 20, out_proj 400: 1540.
    # macs 3·20·40 + (3 + 3)·20·4 + 3·20·6 + 3·2·20 + 3·20·2 + 3·20·20
    ({"mamba": {"d_state": 2, "expand": 1}}, (1, 3, 20), (1, 3, 20), 800 + 100 + 120 + 60 + 40 + 20 + 400, 0,
     2400 + 480 + 360 + 120 + 120 + 1200),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere


@pytest.mark.parametrize("entry, x, y, params, buffers, macs", CASES, ids=lambda v: str(v)[:50])
def test_hand_computed_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    row = calc(entry, x)
    assert tuple(row["output_shape"]) == y
    assert (row["params"], row["buffers"], row["macs"], row["flops"]) == (params, buffers, macs, 2 * macs)


def test_generation_state_is_constant_in_the_sequence_length() -> None:
    # per sequence and layer: the conv state D·K and the scan's state D·n, 16·(4 + 4) = 128 elements
    # for E 8 (D 16), float32: 512 bytes a sequence, 2 sequences, at any T
    for length in (1, 5, 50):
        config = {"input": [length, 8], "batch": 2, "layers": [{"mamba": {"d_state": 4}}]}
        assert analyse(config).total["kv_cache_bytes"] == 2 * 16 * (4 + 4) * 4


def test_verify_passes() -> None:
    config = {"input": [7, 6], "batch": 2, "layers": [{"linear": {"out_features": 8}},
                                                      {"mamba": {"d_state": 3, "dt_rank": 2}}, "tanh"]}
    result = verify(analyse(config), Options(seed=1))
    assert result.passed, [c for c in result.checks if not c.passed]
