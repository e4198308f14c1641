"""Resampling layers (upsample, pixelshuffle): hand-computed numbers, the NumPy kernels against
torch (every mode, size and scale factor, with and without align_corners), bad input, verify,
each peer tool's count measured on the real tool, --training against FlopCounterMode, and the
resampling configs (ESPCN, a segmentation net) by hand.

Every expected number is worked out by hand from PyTorch's documented formulas; the
arithmetic is written out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layercalc import analyse
from layercalc.kernels import resample
from test_layers import CASE_FIELDS, check_case

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

# (entry, input shape with batch, output shape, params, buffers, macs): no parameters, 0 MACs
CASES = [
    # scale 2: 4·2 = 8, 5·2 = 10
    ({"upsample": {"scale_factor": 2}}, (1, 3, 4, 5), (1, 3, 8, 10), 0, 0, 0),
    ({"upsample": {"size": [7, 9], "mode": "bilinear", "align_corners": True}}, (2, 3, 4, 5), (2, 3, 7, 9), 0, 0, 0),
    # floor(5 · 1.5) = floor(7.5) = 7
    ({"upsample": {"scale_factor": 1.5, "mode": "linear"}}, (1, 2, 5), (1, 2, 7), 0, 0, 0),
    # floor(4 · 1.3) = floor(5.2) = 5, 4 · 2.5 = 10
    ({"upsample": {"scale_factor": [1.3, 2.5], "mode": "bicubic"}}, (1, 1, 4, 4), (1, 1, 5, 10), 0, 0, 0),
    ({"upsample": {"scale_factor": 1.5, "mode": "bicubic", "align_corners": True}}, (2, 2, 3, 4), (2, 2, 4, 6), 0, 0, 0),
    # floor(5 · 0.5) = 2, 6 · 0.5 = 3, floor(3.5) = 3
    ({"upsample": {"scale_factor": 0.5, "mode": "trilinear"}}, (1, 2, 5, 6, 7), (1, 2, 2, 3, 3), 0, 0, 0),
    ({"upsample": {"size": [4, 6, 5], "mode": "trilinear", "align_corners": True}}, (2, 1, 3, 3, 3), (2, 1, 4, 6, 5), 0, 0, 0),
    # an int size applies to every spatial dim
    ({"upsample": {"size": 6}}, (1, 2, 3, 3, 3), (1, 2, 6, 6, 6), 0, 0, 0),
    # the float product in double precision: 100 · 0.29 = 28.999999999999996, floored to 28 (as PyTorch)
    ({"upsample": {"scale_factor": 0.29, "mode": "linear"}}, (1, 1, 100), (1, 1, 28), 0, 0, 0),
    # pixel shuffle: C·r² = 18 with r = 3 -> 2 channels, 4·3 = 12, 5·3 = 15
    ({"pixelshuffle": {"upscale_factor": 3}}, (1, 18, 4, 5), (1, 2, 12, 15), 0, 0, 0),
    ({"pixelshuffle": {"upscale_factor": 2}}, (2, 4, 3, 3), (2, 1, 6, 6), 0, 0, 0),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:50])
def test_layer_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


# every row's sizes are ones where PyTorch's backward is its forward's adjoint (see
# test_pytorch_nearest_backward_is_not_its_forwards_adjoint; the kernels' test covers the rest)
@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES], ids=lambda v: str(v)[:50])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple) -> None:
    pytest.importorskip("torch")
    from test_reference_torch import test_forward_and_backward_match_torch as against_torch

    against_torch(entry, x_shape)


# -- the kernels against torch ------------------------------------------------------------------

MODES = {1: ["nearest", "linear"], 2: ["nearest", "bilinear", "bicubic"], 3: ["nearest", "trilinear"]}
KIND = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}


@st.composite
def interpolations(draw: Any) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(MODES[rank]))
    sizes = tuple(draw(st.integers(1, 7)) for _ in range(rank))
    align = None if mode == "nearest" else draw(st.booleans())
    if draw(st.booleans()):
        scales = tuple(draw(st.sampled_from([0.3, 0.5, 0.77, 1.0, 1.13, 1.5, 2.0, 2.29, 3.0])) for _ in range(rank))
        outs = tuple(int(np.floor(n * s)) for n, s in zip(sizes, scales))
        if min(outs) < 1:
            scales = tuple(max(s, 1.0) for s in scales)
            outs = tuple(int(np.floor(n * s)) for n, s in zip(sizes, scales))
        kw: dict[str, Any] = {"scale_factor": scales}
    else:
        outs = tuple(draw(st.integers(1, 11)) for _ in range(rank))
        scales = (None,) * rank
        kw = {"size": outs}
    return dict(rank=rank, mode=mode, sizes=sizes, align=align, outs=outs, scales=scales, kw=kw)


def torch_adjoint(case: dict[str, Any], dy: np.ndarray) -> np.ndarray:
    """The exact gradient of torch's forward: its forward applied to every unit input, transposed."""
    torch = pytest.importorskip("torch")
    n = int(np.prod(case["sizes"]))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *case["sizes"])
    m = torch.nn.functional.interpolate(basis, mode=case["mode"], align_corners=case["align"], **case["kw"])
    m = m.reshape(n, -1).numpy()  # row i: the output of unit input i
    lead = dy.shape[:2]
    return np.einsum("io,bo->bi", m, dy.reshape(-1, m.shape[1])).reshape(*lead, *case["sizes"])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(interpolations())
def test_interpolation_matches_torch(case: dict[str, Any]) -> None:
    """Forward equal to F.interpolate; backward equal to the adjoint of torch's forward."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *case["sizes"]))
    want = torch.nn.functional.interpolate(torch.tensor(x), mode=case["mode"], align_corners=case["align"], **case["kw"])
    y, cache = resample.interpolate_forward(x, case["outs"], KIND[case["mode"]], bool(case["align"]), case["scales"])
    assert y.shape == tuple(want.shape)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(resample.interpolate_backward(dy, cache), torch_adjoint(case, dy), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode, rank", [("linear", 1), ("bilinear", 2), ("bicubic", 2), ("trilinear", 3)])
@pytest.mark.parametrize("align", [False, True])
def test_interpolating_backward_matches_torch_autograd(mode: str, rank: int, align: bool) -> None:
    """Where PyTorch's backward is its forward's adjoint (sizes that change), ours equals it."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    sizes, outs = (5, 3, 4)[:rank], (9, 7, 3)[:rank]
    x = rng.standard_normal((2, 2, *sizes))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, size=outs, mode=mode, align_corners=align)
    y, cache = resample.interpolate_forward(x, outs, KIND[mode], align, (None,) * rank)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(resample.interpolate_backward(dy, cache), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_bicubic_weights_by_hand() -> None:
    """Keys' kernel with A = −0.75 at t = ½. Near taps (u = ½): ((A+2)u − (A+3))u² + 1
    = (1.25·0.5 − 2.25)·0.25 + 1 = −0.40625 + 1 = 0.59375. Far taps (u = 1.5):
    ((Au − 5A)u + 8A)u − 4A = ((−1.125 + 3.75)·1.5 − 6)·1.5 + 3 = −3.09375 + 3 = −0.09375.
    They sum to 1."""
    index, weight = resample.axis_taps("cubic", 4, 2, False, None)
    # 4 -> 2: scale 2, sources 2·(i + ½) − ½ = 0.5 and 2.5, so t = ½ and the taps floor − 1 .. floor + 2 clamped
    assert index.T.tolist() == [[0, 0, 1, 2], [1, 2, 3, 3]]
    np.testing.assert_allclose(weight.T, [[-0.09375, 0.59375, 0.59375, -0.09375]] * 2)


def test_nearest_by_hand() -> None:
    # 3 -> 7 by size: scale 3/7, floor(i · 3/7) for i = 0..6 = 0 0 0 1 1 2 2
    index, _ = resample.axis_taps("nearest", 3, 7, False, None)
    assert index[0].tolist() == [0, 0, 0, 1, 1, 2, 2]
    # linear 2 -> 4, align_corners false: sources (i + ½)/2 − ½ = −0.25 (clamped to 0), 0.25, 0.75, 1.25;
    # weights (1 − frac, frac); at 1.25 the lower index is the last one, so both taps read x1 (0.75 + 0.25)
    index, weight = resample.axis_taps("linear", 2, 4, False, None)
    assert index.T.tolist() == [[0, 1], [0, 1], [0, 1], [1, 1]]
    np.testing.assert_allclose(weight.T, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]])


def test_pytorch_nearest_backward_is_not_its_forwards_adjoint() -> None:
    """Documented PyTorch (2.13, CPU, float64) behaviour, why our backward is checked against the
    adjoint of torch's forward: for nearest 1-D with scale_factor 1.38 on 2 values the forward
    reads [x0, x0], yet autograd hands x1 the second output's gradient (its backward copies an
    unchanged size). Ours gives the true gradient."""
    torch = pytest.importorskip("torch")
    tx = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, scale_factor=1.38, mode="nearest")
    assert ty.detach().numpy().tolist() == [[[1.0, 1.0]]]
    ty.backward(torch.tensor([[[10.0, 100.0]]], dtype=torch.float64))
    if tx.grad.numpy().tolist() != [[[10.0, 100.0]]]:
        pytest.skip("this PyTorch's nearest backward is consistent now")
    y, cache = resample.interpolate_forward(tx.detach().numpy(), (2,), "nearest", False, (1.38,))
    assert y.tolist() == [[[1.0, 1.0]]]
    assert resample.interpolate_backward(np.array([[[10.0, 100.0]]]), cache).tolist() == [[[110.0, 0.0]]]


@pytest.mark.parametrize("r, c", [(1, 3), (2, 8), (3, 9)])
def test_pixel_shuffle_matches_torch(r: int, c: int) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, c, 3, 4))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.pixel_shuffle(tx, r)
    y = resample.pixel_shuffle_forward(x, r)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(resample.pixel_shuffle_backward(dy, r), tx.grad.numpy())


def test_pixel_shuffle_by_hand() -> None:
    # channel c·r² + i·r + j lands at row h·r + i, column w·r + j: channels 0..3 of one pixel tile a 2x2 block
    x = np.arange(4.0).reshape(1, 4, 1, 1)
    assert resample.pixel_shuffle_forward(x, 2).tolist() == [[[[0.0, 1.0], [2.0, 3.0]]]]


# -- verify, bad input ---------------------------------------------------------------------------


def test_verify_passes_on_every_mode_and_pixelshuffle(cli, write) -> None:
    net = write("up.yaml", "input: [8, 5, 6]\nbatch: 2\nlayers:\n"
                "  - pixelshuffle: {upscale_factor: 2}\n"
                "  - upsample: {size: [7, 9], mode: bicubic, align_corners: true}\n"
                "  - upsample: {scale_factor: 1.4, mode: bicubic}\n"
                "  - upsample: {scale_factor: [1.5, 0.7], mode: bilinear}\n"
                "  - upsample: {size: [11, 7], mode: bilinear, align_corners: true}\n"
                "  - upsample: {size: [13, 5]}\n"
                "  - flatten: {start_dim: 2}\n"
                "  - upsample: {scale_factor: 1.5, mode: linear, align_corners: true}\n"
                "  - upsample: {size: 40, mode: linear}\n"
                "  - upsample: {scale_factor: 0.6}\n")
    run = cli("verify", net, "-f", "tsv")
    assert run.status == 0, run.out
    vol = write("up3.yaml", "input: [2, 3, 4, 5]\nbatch: 2\nlayers:\n"
                "  - upsample: {scale_factor: [1.5, 2, 1.3], mode: trilinear}\n"
                "  - upsample: {size: [4, 5, 6], mode: trilinear, align_corners: true}\n"
                "  - upsample: {scale_factor: 1.7}\n")
    run = cli("verify", vol, "-f", "tsv")
    assert run.status == 0, run.out


BAD = [
    ("upsample: {size: 8, scale_factor: 2}", "[3, 8, 8]", "upsample 'upsample1'): set exactly one of size and scale_factor (got both)"),
    ("upsample: {mode: bilinear}", "[3, 8, 8]", "upsample 'upsample1'): set exactly one of size and scale_factor (got neither)"),
    ("upsample", "[3, 8, 8]", "upsample 'upsample1'): set exactly one of size and scale_factor (got neither)"),
    ("upsample: {scale_factor: 2, align_corners: true}", "[3, 8, 8]",
     "upsample 'upsample1'): align_corners can only be set with the interpolating modes: linear, bilinear, bicubic, trilinear"),
    ("upsample: {scale_factor: 2, mode: bilinear}", "[3, 8]", "upsample 'upsample1'): mode 'bilinear' expects input (N, C, H, W), got 1x3x8"),
    ("upsample: {scale_factor: 2, mode: linear}", "[3, 8, 8]", "upsample 'upsample1'): mode 'linear' expects input (N, C, L), got 1x3x8x8"),
    ("upsample: {scale_factor: 2, mode: trilinear}", "[3, 8, 8]", "upsample 'upsample1'): mode 'trilinear' expects input (N, C, D, H, W), got 1x3x8x8"),
    ("upsample: {scale_factor: 2, mode: bicubic}", "[3, 4, 8, 8]", "upsample 'upsample1'): mode 'bicubic' expects input (N, C, H, W), got 1x3x4x8x8"),
    ("upsample: {scale_factor: 2}", "[12]", "upsample 'upsample1'): mode 'nearest' expects input (N, C, L) or (N, C, H, W) or (N, C, D, H, W), got 1x12"),
    ("upsample: {scale_factor: 2, mode: area}", "[3, 8, 8]",
     "upsample 'upsample1'): mode: expected one of nearest, linear, bilinear, bicubic, trilinear, got 'area'"),
    ("upsample: {size: [4, 4, 4]}", "[3, 8, 8]", "upsample 'upsample1'): size: expected one value or a pair [h, w], got [4, 4, 4] (3 entries for 2 spatial dims)"),
    ("upsample: {scale_factor: [2, 2]}", "[3, 4, 8, 8]", "upsample 'upsample1'): scale_factor: expected one value or a triple [d, h, w], got [2, 2] (2 entries for 3 spatial dims)"),
    ("upsample: {scale_factor: 0}", "[3, 8, 8]", "upsample 'upsample1'): scale_factor: expected a number > 0 or a list of 1 to 3 of them, got 0"),
    ("upsample: {scale_factor: -2}", "[3, 8, 8]", "upsample 'upsample1'): scale_factor: expected a number > 0 or a list of 1 to 3 of them, got -2"),
    ("upsample: {size: 0}", "[3, 8, 8]", "upsample 'upsample1'): size: expected an integer >= 1 or a list of one per spatial dim, got 0"),
    ("upsample: {scale_factor: 0.1}", "[3, 8, 8]", "upsample 'upsample1'): scale_factor 0.1 leaves no output (size 0x0)"),
    ("pixelshuffle: {upscale_factor: 2}", "[6, 8, 8]", "pixelshuffle 'pixelshuffle1'): channels 6 are not divisible by upscale_factor² = 4"),
    ("pixelshuffle: {upscale_factor: 0}", "[4, 8, 8]", "pixelshuffle 'pixelshuffle1'): upscale_factor: expected an integer >= 1, got 0"),
    ("pixelshuffle: {upscale_factor: 2}", "[4, 8]", "pixelshuffle 'pixelshuffle1'): expects input (N, C, H, W), got 1x4x8"),
]


@pytest.mark.parametrize("layer, shape, message", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_input_is_one_line_exit_2(cli, write, layer: str, shape: str, message: str) -> None:
    path = write("bad.yaml", f"input: {shape}\nlayers:\n  - {layer}\n")
    run = cli("shapes", path)
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: {path}:3: layers[0] ({message}\n"


# -- peers and training, measured on the real tools ---------------------------------------------

PEER_CONFIGS = [
    {"input": [1, 4], "batch": 2, "layers": [{"upsample": {"scale_factor": 0.5}}]},
    {"input": [3, 4, 5], "batch": 2, "layers": [{"upsample": {"mode": "bilinear", "size": [8, 3]}}]},
    {"input": [3, 4, 5], "batch": 2, "layers": [{"upsample": {"mode": "bilinear", "scale_factor": [1.5, 2], "align_corners": True}}]},
    {"input": [3, 4, 5], "batch": 3, "layers": [{"upsample": {"mode": "bicubic", "scale_factor": 1.5}}]},
    {"input": [3, 4, 5], "batch": 2, "layers": [{"upsample": {"scale_factor": 2}}]},
    {"input": [2, 6], "batch": 2, "layers": [{"upsample": {"mode": "linear", "size": 9}}]},
    {"input": [3, 4, 5, 3], "batch": 2, "layers": [{"upsample": {"mode": "trilinear", "scale_factor": 1.5}}]},
    {"input": [3, 4, 5, 3], "batch": 2, "layers": [{"upsample": {"size": [5, 5, 5]}}]},
    {"input": [8, 4, 5], "batch": 2, "layers": [{"pixelshuffle": {"upscale_factor": 2}}]},
    {"input": [4, 5, 6, 7], "batch": 2, "layers": [{"conv3d": {"out_channels": 4, "kernel_size": 3, "groups": 2}},
                                                  {"maxpool3d": {"kernel_size": 2}}, {"avgpool3d": {"kernel_size": 1}},
                                                  "batchnorm3d", {"adaptiveavgpool3d": {"output_size": 1}}]},
    {"input": [4, 9], "batch": 2, "layers": [{"convtranspose1d": {"out_channels": 6, "kernel_size": 3, "stride": 2, "groups": 2}}]},
]


@pytest.mark.parametrize("config", PEER_CONFIGS, ids=lambda c: str(c["layers"][0])[:45])
@pytest.mark.parametrize("tool", ["torch", "fvcore", "thop", "ptflops", "torchinfo"])
def test_each_peer_tool_counts_as_declared(config: dict[str, Any], tool: str) -> None:
    from test_conventions import ours, tool_total

    assert ours(config, tool) == tool_total(tool, config)


@pytest.mark.parametrize("name", ["espcn", "fcn_small", "unet3d_small"])
def test_training_matches_flopcountermode_forward_and_backward(name: str) -> None:
    torch = pytest.importorskip("torch")
    import yaml
    from torch.utils.flop_counter import FlopCounterMode

    import torch_models
    from layercalc.conventions import training

    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config["batch"] = 2
    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(shape)).sum().backward()
    assert training(analyse(config), "torch")["training_flops"] == counter.get_total_flops()


# -- shipped configs ----------------------------------------------------------------------------


def test_espcn_by_hand() -> None:
    # conv 1->64 5x5 + bias, 64->32 3x3 + bias, 32->9 3x3 + bias; MACs per 64x64 output pixel
    report = analyse(CONFIGS / "espcn.yaml")
    assert report.total["params"] == (1 * 64 * 25 + 64) + (64 * 32 * 9 + 32) + (32 * 9 * 9 + 9) == 22_729
    assert report.total["macs"] == 64 * 64 * (64 * 1 * 25 + 32 * 64 * 9 + 9 * 32 * 9)
    assert report.output_shape == (1, 1, 192, 192)


def test_fcn_small_by_hand() -> None:
    params = (
        3 * 32 * 9 + 64            # stem (no bias) + bn
        + 32 * 64 * 9 + 128        # down1 + bn
        + 64 * 128 * 9 + 256       # down2 + bn
        + (64 + 128) * 64 * 9 + 128  # dec2 on the 64 skip + 128 upsampled channels, + bn
        + (32 + 64) * 32 * 9 + 64  # dec1 on 32 + 64 channels, + bn
        + 32 * 21 + 21             # classifier
    )
    report = analyse(CONFIGS / "fcn_small.yaml")
    assert report.total["params"] == params == 232_597
    assert report.output_shape == (1, 21, 128, 128)
    rows = {r["path"]: r for r in report.rows()}
    assert rows["resize"]["input_shape"] == [1, 21, 64, 64] and rows["resize"]["macs"] == 0
