"""Every layer type against hand-computed expectations: output shape, params, buffers, MACs.

Each expected number is worked out by hand from PyTorch's documented formulas; the arithmetic is
written out so it can be checked by eye. Adding a layer type = adding a row here.
"""

from __future__ import annotations

import pytest

from layercalc import analyse
from layercalc.errors import ShapeError
from layercalc.layers import REGISTRY

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # linear: params n_in·n_out + n_out, macs N·(leading)·n_in·n_out
    ({"linear": {"out_features": 10}}, (2, 20), (2, 10), 20 * 10 + 10, 0, 2 * 20 * 10),
    ({"linear": {"out_features": 3, "bias": False}}, (4, 5, 8), (4, 5, 3), 8 * 3, 0, 4 * 5 * 8 * 3),
    # 4-D input: acts on the last dim; macs N·3·4 leading positions · 5 · 6
    ({"linear": {"out_features": 6}}, (2, 3, 4, 5), (2, 3, 4, 6), 5 * 6 + 6, 0, 2 * 3 * 4 * 5 * 6),
    # conv2d, ResNet's stem: (224 + 2·3 - 7) // 2 + 1 = 112
    (
        {"conv2d": {"out_channels": 64, "kernel_size": 7, "stride": 2, "padding": 3, "bias": False}},
        (1, 3, 224, 224), (1, 64, 112, 112), 64 * 3 * 7 * 7, 0, 64 * 112 * 112 * 3 * 7 * 7,
    ),
    # groups 4, dilation 2: (10 + 2 - 2·2 - 1) // 1 + 1 = 8; weight 16 x (8/4) x 3 x 3
    (
        {"conv2d": {"out_channels": 16, "kernel_size": 3, "padding": 1, "dilation": 2, "groups": 4}},
        (2, 8, 10, 10), (2, 16, 8, 8), 16 * 2 * 9 + 16, 0, 2 * 16 * 8 * 8 * 2 * 9,
    ),
    # padding 'same' with an even kernel keeps 5x5
    (
        {"conv2d": {"out_channels": 3, "kernel_size": 4, "padding": "same"}},
        (1, 2, 5, 5), (1, 3, 5, 5), 3 * 2 * 16 + 3, 0, 3 * 25 * 2 * 16,
    ),
    # 'valid', stride 2, rectangular input: (8-3)//2+1 = 3, (9-3)//2+1 = 4
    (
        {"conv2d": {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "valid"}},
        (1, 1, 8, 9), (1, 4, 3, 4), 4 * 1 * 9 + 4, 0, 4 * 3 * 4 * 1 * 9,
    ),
    # depthwise (MobileNet): groups = channels, (15 + 2 - 3) // 2 + 1 = 8
    (
        {"conv2d": {"out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 32}},
        (1, 32, 15, 15), (1, 32, 8, 8), 32 * 1 * 9 + 32, 0, 32 * 8 * 8 * 1 * 9,
    ),
    # rectangular kernel [1, 3] with padding [0, 1]
    (
        {"conv2d": {"out_channels": 2, "kernel_size": [1, 3], "padding": [0, 1], "bias": False}},
        (1, 5, 4, 6), (1, 2, 4, 6), 2 * 5 * 1 * 3, 0, 2 * 4 * 6 * 5 * 3,
    ),
    # conv1d: (100 + 4 - 5) // 2 + 1 = 50
    (
        {"conv1d": {"out_channels": 16, "kernel_size": 5, "stride": 2, "padding": 2}},
        (3, 12, 100), (3, 16, 50), 16 * 12 * 5 + 16, 0, 3 * 16 * 50 * 12 * 5,
    ),
    # convtranspose2d: (7-1)·2 - 2·1 + 1·(3-1) + 1 + 1 = 14; weight (c_in, c_out, k, k)
    (
        {"convtranspose2d": {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}},
        (1, 16, 7, 7), (1, 8, 14, 14), 16 * 8 * 9 + 8, 0, 1 * 16 * 7 * 7 * 8 * 9,
    ),
    # convtranspose2d groups 2, dilation 2, kernel [2, 3]: h (5-1) + 2·1 + 1 = 7, w (6-1) + 2·2 + 1 = 10
    (
        {"convtranspose2d": {"out_channels": 6, "kernel_size": [2, 3], "dilation": 2, "groups": 2, "bias": False}},
        (2, 4, 5, 6), (2, 6, 7, 10), 4 * 3 * 2 * 3, 0, 2 * 4 * 5 * 6 * 3 * 2 * 3,
    ),
    # maxpool: (112 + 2 - 2 - 1) // 2 + 1 = 56
    ({"maxpool2d": {"kernel_size": 3, "stride": 2, "padding": 1}}, (1, 64, 112, 112), (1, 64, 56, 56), 0, 0, 0),
    # ceil_mode: ceil((6 - 3) / 2) + 1 = 3 (floor would give 2)
    ({"maxpool2d": {"kernel_size": 3, "stride": 2, "ceil_mode": True}}, (1, 1, 6, 6), (1, 1, 3, 3), 0, 0, 0),
    # ceil_mode with padding: ceil(5/2)+1 = 4, but window 4 would start at 6 >= 5 + 1, so 3
    ({"maxpool2d": {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}}, (1, 1, 5, 5), (1, 1, 3, 3), 0, 0, 0),
    # dilated max pool: (9 - 2·2 - 1) // 1 + 1 = 5
    ({"maxpool2d": {"kernel_size": 3, "stride": 1, "dilation": 2}}, (1, 2, 9, 9), (1, 2, 5, 5), 0, 0, 0),
    ({"maxpool1d": {"kernel_size": 2}}, (1, 3, 9), (1, 3, 4), 0, 0, 0),
    # avgpool1d, stride defaults to the kernel: (10 - 3) // 3 + 1 = 3
    ({"avgpool1d": {"kernel_size": 3}}, (2, 4, 10), (2, 4, 3), 0, 0, 0),
    ({"avgpool2d": {"kernel_size": 2, "stride": 2, "ceil_mode": True}}, (1, 3, 7, 7), (1, 3, 4, 4), 0, 0, 0),
    ({"adaptiveavgpool2d": {"output_size": 1}}, (1, 512, 7, 7), (1, 512, 1, 1), 0, 0, 0),
    ({"adaptivemaxpool2d": {"output_size": [3, None]}}, (2, 4, 10, 6), (2, 4, 3, 6), 0, 0, 0),
    ({"adaptiveavgpool1d": {"output_size": 5}}, (1, 3, 17), (1, 3, 5), 0, 0, 0),
    ({"adaptivemaxpool1d": {"output_size": 4}}, (1, 3, 17), (1, 3, 4), 0, 0, 0),
    # batchnorm: weight + bias (2C) params; running mean, var (2C) + num_batches_tracked (1) buffers
    ("batchnorm2d", (2, 64, 8, 8), (2, 64, 8, 8), 2 * 64, 2 * 64 + 1, 0),
    ("batchnorm1d", (4, 10), (4, 10), 2 * 10, 2 * 10 + 1, 0),
    ({"batchnorm1d": {"affine": False}}, (4, 10, 7), (4, 10, 7), 0, 2 * 10 + 1, 0),
    # no running statistics: no buffers at all (inference normalises with the batch's own)
    ({"batchnorm2d": {"track_running_stats": False}}, (2, 3, 4, 4), (2, 3, 4, 4), 2 * 3, 0, 0),
    # layernorm over the last dim D: weight + bias = 2D
    ("layernorm", (2, 5, 16), (2, 5, 16), 2 * 16, 0, 0),
    ({"layernorm": {"bias": False}}, (2, 16), (2, 16), 16, 0, 0),
    ({"groupnorm": {"num_groups": 4}}, (2, 8, 3, 3), (2, 8, 3, 3), 2 * 8, 0, 0),
    ("relu", (2, 3, 4, 4), (2, 3, 4, 4), 0, 0, 0),
    ("relu6", (2, 7), (2, 7), 0, 0, 0),
    ({"leakyrelu": {"negative_slope": 0.2}}, (2, 7), (2, 7), 0, 0, 0),
    ("elu", (2, 7), (2, 7), 0, 0, 0),
    ({"gelu": {"approximate": "tanh"}}, (2, 7), (2, 7), 0, 0, 0),
    ("silu", (2, 7), (2, 7), 0, 0, 0),
    ("sigmoid", (2, 7), (2, 7), 0, 0, 0),
    ("tanh", (2, 7), (2, 7), 0, 0, 0),
    ("hardswish", (2, 7), (2, 7), 0, 0, 0),
    ("hardsigmoid", (2, 7), (2, 7), 0, 0, 0),
    ({"softmax": {"dim": 1}}, (2, 5), (2, 5), 0, 0, 0),
    ("identity", (2, 5), (2, 5), 0, 0, 0),
    ("dropout", (2, 5), (2, 5), 0, 0, 0),
    ({"dropout2d": {"p": 0.1}}, (2, 3, 4, 4), (2, 3, 4, 4), 0, 0, 0),
    # flatten: dims count the batch; 3·4·5 = 60
    ("flatten", (2, 3, 4, 5), (2, 60), 0, 0, 0),
    ({"flatten": {"start_dim": 2}}, (2, 3, 4, 5), (2, 3, 20), 0, 0, 0),
    ({"flatten": {"end_dim": 2}}, (2, 3, 4, 5), (2, 12, 5), 0, 0, 0),
    # residual: body conv 4->4 3x3 pad 1 keeps the shape; identity shortcut adds no params
    (
        {"residual": {"body": [{"conv2d": {"out_channels": 4, "kernel_size": 3, "padding": 1}}]}},
        (1, 4, 6, 6), (1, 4, 6, 6), 4 * 4 * 9 + 4, 0, 4 * 6 * 6 * 4 * 9,
    ),
    # residual with a projection shortcut (1x1 stride 2) and a strided body
    (
        {"residual": {
            "body": [{"conv2d": {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False}}],
            "shortcut": [{"conv2d": {"out_channels": 8, "kernel_size": 1, "stride": 2, "bias": False}}],
        }},
        (1, 4, 6, 6), (1, 8, 3, 3), 8 * 4 * 9 + 8 * 4, 0, 8 * 9 * 4 * 9 + 8 * 9 * 4,
    ),
    # concat: identity branch (4 ch) + 1x1 conv branch (2 ch) = 6 channels
    (
        {"concat": {"branches": [[], [{"conv2d": {"out_channels": 2, "kernel_size": 1}}]]}},
        (1, 4, 6, 6), (1, 6, 6, 6), 2 * 4 + 2, 0, 2 * 36 * 4,
    ),
    ({"sequential": {"layers": [{"linear": {"out_features": 8}}, "relu"]}}, (3, 4), (3, 8), 4 * 8 + 8, 0, 3 * 4 * 8),
]


def calc(entry: object, shape: tuple[int, ...]) -> dict:
    """The top row of a one-entry network with the given full input shape."""
    report = analyse({"input": list(shape[1:]), "batch": shape[0], "layers": [entry]})
    return next(iter(report.rows()))


# a row of CASES, here and in each family's test file
CASE_FIELDS = "entry, x, y, params, buffers, macs"


def check_case(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    """A hand-computed CASES row against the top row of its one-entry network (FLOPs = 2·MACs)."""
    row = calc(entry, x)
    assert tuple(row["output_shape"]) == y
    assert (row["params"], row["buffers"], row["macs"], row["flops"]) == (params, buffers, macs, 2 * macs)


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:40])
def test_layer_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


def family_cases() -> list:
    """CASES here and in every family's test file (a tests/test_*.py defining LAYER_CASES)."""
    import importlib
    from pathlib import Path

    cases = list(CASES)
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        if "\nLAYER_CASES = " in path.read_text():
            cases += importlib.import_module(path.stem).LAYER_CASES
    return cases


def test_every_layer_type_has_a_case() -> None:
    covered = set()
    for entry, *_ in family_cases():
        covered.add(entry if isinstance(entry, str) else next(iter(entry)))
    assert covered == set(REGISTRY)


def test_repeat_multiplies_and_names_copies() -> None:
    # two copies of linear 6->6: params 2·(36+6), macs 2·(5·6·6)
    report = analyse({"input": [6], "batch": 5, "layers": [{"linear": {"out_features": 6}, "repeat": 2, "name": "fc"}]})
    rows = list(report.rows())
    assert [r["path"] for r in rows] == ["fc", "fc.0", "fc.1"]
    assert [r["name"] for r in rows] == ["fc", "fc.0", "fc.1"]
    assert report.total["params"] == 2 * (36 + 6) and report.total["macs"] == 2 * 5 * 6 * 6


def test_huge_repeat_is_exact_without_expansion() -> None:
    n = 10**9
    report = analyse({"input": [6], "layers": [{"linear": {"out_features": 6}, "repeat": n}]})
    assert report.total["params"] == n * 42 and report.total["macs"] == n * 36


def test_repeat_with_changing_shapes_counts_each_copy() -> None:
    # maxpool 2 three times: 16 -> 8 -> 4 -> 2
    report = analyse({"input": [1, 16, 16], "layers": [{"maxpool2d": {"kernel_size": 2}, "repeat": 3}]})
    assert report.output_shape == (1, 1, 2, 2)


def test_activation_bytes_and_param_bytes() -> None:
    # linear 4->8 on batch 2 in float64: output 2·8 elements, 40 params, 8 bytes each
    report = analyse({"input": [4], "batch": 2, "dtype": "float64", "layers": [{"linear": {"out_features": 8}}]})
    assert report.total["activation_bytes"] == 2 * 8 * 8
    assert report.total["param_bytes"] == (4 * 8 + 8) * 8


def test_huge_sizes_stay_exact() -> None:
    report = analyse({"input": [10**12], "layers": [{"linear": {"out_features": 10**12}}]})
    assert report.total["params"] == 10**24 + 10**12


@pytest.mark.parametrize(
    "entry, x, fragment",
    [
        ({"conv2d": {"out_channels": 4, "kernel_size": 9}}, (1, 3, 7, 7), "kernel_size 9 exceeds padded input 7x7"),
        ({"conv2d": {"out_channels": 4, "kernel_size": 3, "groups": 2}}, (1, 3, 7, 7), "groups 2 does not divide in_channels 3"),
        ({"conv2d": {"out_channels": 4, "kernel_size": 3, "in_channels": 4}}, (1, 3, 7, 7), "in_channels 4 does not match"),
        ({"conv2d": {"out_channels": 4, "kernel_size": 3, "padding": "same", "stride": 2}}, (1, 3, 7, 7), "stride 1"),
        ({"maxpool2d": {"kernel_size": 2, "padding": 2}}, (1, 3, 7, 7), "padding 2 exceeds half"),
        ({"groupnorm": {"num_groups": 3}}, (1, 4, 7, 7), "num_groups 3 does not divide"),
        ({"flatten": {"start_dim": 5}}, (1, 4, 7, 7), "start_dim 5 is out of range"),
        ("batchnorm2d", (1, 4), "expects input (N, C, H, W), got 1x4"),
        (
            {"residual": {"body": [{"conv2d": {"out_channels": 8, "kernel_size": 1}}]}},
            (1, 4, 7, 7), "body gives 1x8x7x7 but shortcut gives 1x4x7x7",
        ),
        (
            {"concat": {"branches": [[], [{"maxpool2d": {"kernel_size": 2}}]]}},
            (1, 4, 8, 8), "branch 1 gives 1x4x4x4 but branch 0 gives 1x4x8x8",
        ),
    ],
)
def test_shape_errors(entry: object, x: tuple, fragment: str) -> None:
    with pytest.raises(ShapeError) as info:
        calc(entry, x)
    assert fragment in str(info.value)


def test_concat_splits_the_gradient_by_branch_channels() -> None:
    import numpy as np

    # three branches of 1, 2 and 3 channels: dy's channels 0 | 1-2 | 3-5
    outs = [np.zeros((2, c, 3)) for c in (1, 2, 3)]
    dy = np.arange(2 * 6 * 3, dtype=float).reshape(2, 6, 3)
    parts = REGISTRY["concat"](branches=[[], [], []]).split(dy, outs)
    assert [p.shape for p in parts] == [(2, 1, 3), (2, 2, 3), (2, 3, 3)]
    assert np.array_equal(np.concatenate(parts, axis=1), dy) and np.array_equal(parts[1], dy[:, 1:3])
