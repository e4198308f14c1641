"""3-D layers (conv3d, maxpool3d, avgpool3d, adaptiveavgpool3d, batchnorm3d) and convtranspose1d:
hand-computed numbers, forward/backward against torch autograd, bad input, verify, and the
volumetric configs (r3d_18 against torchvision's published figures, a 3-D U-Net by hand).

Every expected number is worked out by hand from PyTorch's documented formulas; the
arithmetic is written out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layercalc import analyse
from test_layers import CASE_FIELDS, check_case

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
IMPLS = Path(__file__).resolve().parent / "impls"

# (entry, input shape with batch, output shape, params, buffers, macs)
CASES = [
    # r3d_18's stem: D (16 + 2·1 − 3)//1 + 1 = 16, H and W (112 + 2·3 − 7)//2 + 1 = 56;
    # weight 64·3·(3·7·7); MACs N·c_out·D·H·W·(c_in·kd·kh·kw)
    (
        {"conv3d": {"out_channels": 64, "kernel_size": [3, 7, 7], "stride": [1, 2, 2], "padding": [1, 3, 3], "bias": False}},
        (1, 3, 16, 112, 112), (1, 64, 16, 56, 56), 64 * 3 * 3 * 7 * 7, 0, 64 * 16 * 56 * 56 * (3 * 3 * 7 * 7),
    ),
    # groups 2, dilation [1, 2, 2], stride 2: D (7 + 2 − 3)//2 + 1 = 4, H (9 + 2 − 2·2 − 1)//2 + 1 = 4,
    # W (10 + 2 − 5)//2 + 1 = 4; weight 6·(4/2)·27 + bias 6
    (
        {"conv3d": {"out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "dilation": [1, 2, 2], "groups": 2}},
        (2, 4, 7, 9, 10), (2, 6, 4, 4, 4), 6 * 2 * 27 + 6, 0, 2 * 6 * 4 * 4 * 4 * (2 * 27),
    ),
    # padding 'same' with an even kernel [2, 3, 4] keeps 5x6x7
    (
        {"conv3d": {"out_channels": 2, "kernel_size": [2, 3, 4], "padding": "same", "bias": False}},
        (1, 3, 5, 6, 7), (1, 2, 5, 6, 7), 2 * 3 * 24, 0, 2 * 5 * 6 * 7 * (3 * 24),
    ),
    # convtranspose1d: (10 − 1)·2 − 2·1 + (4 − 1) + 0 + 1 = 20; weight (c_in, c_out, k) = 16·8·4 + bias 8;
    # MACs N·c_in·L_in·(c_out/groups)·k
    (
        {"convtranspose1d": {"out_channels": 8, "kernel_size": 4, "stride": 2, "padding": 1}},
        (1, 16, 10), (1, 8, 20), 16 * 8 * 4 + 8, 0, 16 * 10 * 8 * 4,
    ),
    # groups 2, dilation 2, output_padding 1 (< stride 3): (7 − 1)·3 − 2·2 + 2·(3 − 1) + 1 + 1 = 20;
    # weight 4·(6/2)·3 + bias 6
    (
        {"convtranspose1d": {"out_channels": 6, "kernel_size": 3, "stride": 3, "padding": 2, "output_padding": 1,
                             "dilation": 2, "groups": 2}},
        (2, 4, 7), (2, 6, 20), 4 * 3 * 3 + 6, 0, 2 * 4 * 7 * 3 * 3,
    ),
    # maxpool3d 3/2 pad 1: (9 + 2 − 3)//2 + 1 = 5, (10 − 1)//2 + 1 = 5, (11 − 1)//2 + 1 = 6
    ({"maxpool3d": {"kernel_size": 3, "stride": 2, "padding": 1}}, (1, 2, 9, 10, 11), (1, 2, 5, 5, 6), 0, 0, 0),
    # ceil_mode: ceil((5 − 2)/2) + 1 = 3, ceil(4/2) + 1 = 3, ceil(5/2) + 1 = 4 (each last window starts inside)
    ({"maxpool3d": {"kernel_size": 2, "ceil_mode": True}}, (1, 1, 5, 6, 7), (1, 1, 3, 3, 4), 0, 0, 0),
    # dilation 2 on H and W: (5 − 2·1 − 1)//1 + 1 = 3; D kernel 1: 3
    ({"maxpool3d": {"kernel_size": [1, 2, 2], "stride": 1, "dilation": 2}}, (1, 1, 3, 5, 5), (1, 1, 3, 3, 3), 0, 0, 0),
    # avgpool3d, stride = kernel [1, 2, 2]: 4, (8 − 2)//2 + 1 = 4, 4
    ({"avgpool3d": {"kernel_size": [1, 2, 2]}}, (2, 3, 4, 8, 8), (2, 3, 4, 4, 4), 0, 0, 0),
    # ceil((5 + 2 − 3)/2) + 1 = 3 per dim; the last window starts at 4 < 5 + 1
    ({"avgpool3d": {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}},
     (1, 1, 5, 5, 5), (1, 1, 3, 3, 3), 0, 0, 0),
    ({"adaptiveavgpool3d": {"output_size": 1}}, (1, 512, 2, 7, 7), (1, 512, 1, 1, 1), 0, 0, 0),
    # null keeps that dim's input size
    ({"adaptiveavgpool3d": {"output_size": [2, None, 3]}}, (1, 2, 5, 6, 7), (1, 2, 2, 6, 3), 0, 0, 0),
    # batchnorm3d: weight + bias (2C) params; running mean and var (2C) + num_batches_tracked (1) buffers
    ("batchnorm3d", (2, 16, 4, 5, 5), (2, 16, 4, 5, 5), 2 * 16, 2 * 16 + 1, 0),
    ({"batchnorm3d": {"affine": False}}, (2, 3, 2, 2, 2), (2, 3, 2, 2, 2), 0, 2 * 3 + 1, 0),
]
LAYER_CASES = CASES  # test_layers checks that every layer type has a case somewhere


@pytest.mark.parametrize(CASE_FIELDS, CASES, ids=lambda v: str(v)[:40])
def test_layer_numbers(entry: object, x: tuple, y: tuple, params: int, buffers: int, macs: int) -> None:
    check_case(entry, x, y, params, buffers, macs)


@pytest.mark.parametrize("entry, x_shape", [(c[0], c[1]) for c in CASES if c[1][-1] < 100], ids=lambda v: str(v)[:40])
def test_forward_and_backward_match_torch(entry: object, x_shape: tuple) -> None:
    pytest.importorskip("torch")
    from test_reference_torch import test_forward_and_backward_match_torch as against_torch

    against_torch(entry, x_shape)


def test_r3d_18_matches_torchvisions_published_figures() -> None:
    """torchvision's R3D_18_Weights: 33,371,472 params, 40.70 GFLOPS (= MACs) on a 16x112x112 clip."""
    report = analyse(CONFIGS / "r3d_18.yaml")
    assert report.total["params"] == 33_371_472
    assert round(report.total["macs"] / 1e9, 2) == 40.70
    assert report.output_shape == (1, 400)
    rows = {r["path"]: r for r in report.rows()}
    # time, height and width all halve in each of layer2..4: 16x56x56 -> 8x28x28 -> 4x14x14 -> 2x7x7
    assert [rows[f"layer{i}"]["output_shape"][2:] for i in (1, 2, 3, 4)] == [[16, 56, 56], [8, 28, 28], [4, 14, 14], [2, 7, 7]]


def test_unet3d_small_by_hand() -> None:
    # 3x3x3 convs without bias: c_in·c_out·27; each batchnorm 2C; 1x1x1 convs with bias
    params = (
        1 * 8 * 27 + 16          # enc1 + bn
        + 8 * 16 * 27 + 32       # enc2 + bn
        + 16 * 32 * 27 + 64      # bottleneck + bn
        + 32 * 16 + 16           # 1x1x1 after up2
        + 32 * 16 * 27 + 32      # dec2 (16 skip + 16 up channels) + bn
        + 16 * 8 + 8             # 1x1x1 after up1
        + 16 * 8 * 27 + 16       # dec1 (8 + 8 channels) + bn
        + 8 * 3 + 3              # logits
    )
    report = analyse(CONFIGS / "unet3d_small.yaml")
    assert report.total["params"] == params == 35_627
    assert report.output_shape == (1, 3, 16, 64, 64)


def test_convtranspose1d_gradient_ignoring_output_padding_fails_verify(cli, write) -> None:
    net = write("up1d.yaml", "input: [3, 5]\nbatch: 2\nlayers:\n"
                "  - convtranspose1d: {out_channels: 4, kernel_size: 3, stride: 2, padding: 1, output_padding: 1}\n"
                "    name: up\n  - tanh\n")
    run = cli("verify", net, "--impl", str(IMPLS / "convtranspose1d_no_output_padding.py"), "-f", "tsv")
    assert run.status == 1, run.err
    failed = [line.split("\t") for line in run.out.splitlines()[1:] if "\tFalse" in line]
    assert any(f[0] == "up" and f[3] == "dL/dx" for f in failed), run.out
    # the reference passes the same net, K_conv identities included
    run = cli("verify", net, "-f", "tsv")
    assert run.status == 0, run.out
    assert "y = K_convᵀ · vec(x)" in run.out


@pytest.mark.parametrize(("layer", "shape"), [
    # (5 - 1)·1 + 2·(3 - 1) + 0 + 1 + 1 = 10
    ("convtranspose1d: {out_channels: 2, kernel_size: 3, dilation: 2, output_padding: 1}", "1x2x10"),
    # per dim (S − 1)·s + d·(k − 1) + output_padding + 1: (3 − 1)·1 + 3·1 + 2 + 1 = 8, (4 − 1)·2 + 1 + 1 + 1 = 9
    ("convtranspose2d: {out_channels: 2, kernel_size: 2, stride: [1, 2], dilation: [3, 1], output_padding: [2, 1]}", "1x2x8x9"),
])
def test_verify_convtranspose_whose_output_padding_reaches_the_stride(cli, write, layer: str, shape: str) -> None:
    # PyTorch allows output_padding below the stride or the dilation; at or past the stride the
    # output's last cells receive nothing, and the conv it is the adjoint of has outputs no input stands for
    net = write("pad.yaml", f"input: [2, {'3, 4' if '2d' in layer else '5'}]\nlayers:\n  - {layer}\n")
    run = cli("verify", net, "-f", "tsv")
    assert (run.status, run.err.splitlines()[-1:]) == (0, ["17 checks run, 0 more reported for identical layers (deduplicated), 0 skipped, 0 failed"]), run.err
    rows = [line.split("\t") for line in run.out.splitlines()]
    assert rows[1][3:] == ["output shape", "exact", "0.0", "0.0", "True", f"numpy {shape}, calculated {shape}"]
    assert sum(r[3].split(" @ ")[0] in ("y = K_convᵀ · vec(x)", "∇x = K_conv · vec(∇y)") and r[7] == "True" for r in rows) == 4


def test_verify_passes_on_every_new_3d_type(cli, write) -> None:
    net = write("vol.yaml", "input: [4, 6, 7, 5]\nbatch: 2\nlayers:\n"
                "  - conv3d: {out_channels: 4, kernel_size: [2, 3, 3], padding: 1, stride: [1, 2, 1], groups: 2}\n"
                "  - batchnorm3d\n  - relu\n  - maxpool3d: {kernel_size: 2, ceil_mode: true}\n"
                "  - avgpool3d: {kernel_size: [1, 2, 2], stride: 1, padding: [0, 1, 1], count_include_pad: false}\n"
                "  - adaptiveavgpool3d: {output_size: [2, 3, null]}\n  - flatten\n")
    run = cli("verify", net, "-f", "tsv")
    assert run.status == 0, run.out
    for check in ("vec(x ⋆ k) = K_conv · vec(x)", "∇x = K_convᵀ · vec(∇y)", "∇x = ∇y ⋆full flipped k"):
        assert f"conv3d\t{check}" in run.out


BAD = [
    # (layers text, input, message after "layers[0] (type 'name'): ")
    ("conv3d: {out_channels: 4, kernel_size: 3}", "[3, 8, 8]", "conv3d 'conv3d1'): expects input (N, C, D, H, W), got 1x3x8x8"),
    ("maxpool3d: {kernel_size: 2}", "[3, 8, 8]", "maxpool3d 'maxpool3d1'): expects input (N, C, D, H, W), got 1x3x8x8"),
    ("batchnorm3d", "[3, 8, 8]", "batchnorm3d 'batchnorm3d1'): expects input (N, C, D, H, W), got 1x3x8x8"),
    ("adaptiveavgpool3d: {output_size: 1}", "[3, 8, 8]", "adaptiveavgpool3d 'adaptiveavgpool3d1'): expects input (N, C, D, H, W), got 1x3x8x8"),
    ("convtranspose1d: {out_channels: 2, kernel_size: 3}", "[3, 8, 8]", "convtranspose1d 'convtranspose1d1'): expects input (N, C, L), got 1x3x8x8"),
    ("conv3d: {out_channels: 4, kernel_size: [3, 3, 3, 3]}", "[3, 4, 8, 8]",
     "conv3d 'conv3d1'): kernel_size: expected one value or a triple [d, h, w], got [3, 3, 3, 3] (4 entries for 3 spatial dims)"),
    # a list of the wrong length is refused, as PyTorch does, for every N-d argument (it was cycled:
    # a pair on conv3d gave a weight with six spatial dims, 2,918 params instead of 110)
    ("conv3d: {out_channels: 2, kernel_size: [3, 3]}", "[2, 4, 4, 4]",
     "conv3d 'conv3d1'): kernel_size: expected one value or a triple [d, h, w], got [3, 3] (2 entries for 3 spatial dims)"),
    ("conv3d: {out_channels: 2, kernel_size: 3, stride: [1, 2]}", "[2, 4, 4, 4]",
     "conv3d 'conv3d1'): stride: expected one value or a triple [d, h, w], got [1, 2] (2 entries for 3 spatial dims)"),
    ("conv3d: {out_channels: 2, kernel_size: 3, padding: [1, 1]}", "[2, 4, 4, 4]",
     "conv3d 'conv3d1'): padding: expected one value or a triple [d, h, w], got [1, 1] (2 entries for 3 spatial dims)"),
    ("conv3d: {out_channels: 2, kernel_size: 3, dilation: [1]}", "[2, 4, 4, 4]",
     "conv3d 'conv3d1'): dilation: expected one value or a triple [d, h, w], got [1] (1 entry for 3 spatial dims)"),
    ("conv2d: {out_channels: 2, kernel_size: [3, 3, 3]}", "[2, 4, 4]",
     "conv2d 'conv2d1'): kernel_size: expected one value or a pair [h, w], got [3, 3, 3] (3 entries for 2 spatial dims)"),
    ("convtranspose2d: {out_channels: 2, kernel_size: 3, stride: 2, output_padding: [1, 1, 1]}", "[2, 4, 4]",
     "convtranspose2d 'convtranspose2d1'): output_padding: expected one value or a pair [h, w], got [1, 1, 1] (3 entries for 2 spatial dims)"),
    ("maxpool3d: {kernel_size: [2, 2]}", "[2, 4, 4, 4]",
     "maxpool3d 'maxpool3d1'): kernel_size: expected one value or a triple [d, h, w], got [2, 2] (2 entries for 3 spatial dims)"),
    ("avgpool3d: {kernel_size: 2, stride: [2, 1]}", "[2, 4, 4, 4]",
     "avgpool3d 'avgpool3d1'): stride: expected one value or a triple [d, h, w], got [2, 1] (2 entries for 3 spatial dims)"),
    ("maxpool2d: {kernel_size: 2, padding: [1]}", "[2, 4, 4]",
     "maxpool2d 'maxpool2d1'): padding: expected one value or a pair [h, w], got [1] (1 entry for 2 spatial dims)"),
    ("adaptiveavgpool3d: {output_size: [2, null]}", "[2, 4, 4, 4]",
     "adaptiveavgpool3d 'adaptiveavgpool3d1'): output_size: expected one value or a triple [d, h, w], got [2, null] (2 entries for 3 spatial dims)"),
    ("adaptivemaxpool1d: {output_size: [2, 2]}", "[2, 4]",
     "adaptivemaxpool1d 'adaptivemaxpool1d1'): output_size: expected one value or a list [l], got [2, 2] (2 entries for 1 spatial dims)"),
    ("upsample: {size: [4, 4]}", "[2, 4, 4, 4]",
     "upsample 'upsample1'): size: expected one value or a triple [d, h, w], got [4, 4] (2 entries for 3 spatial dims)"),
    ("conv3d: {out_channels: 4, kernel_size: [5, 3, 3]}", "[3, 4, 8, 8]", "conv3d 'conv3d1'): kernel_size 5x3x3 exceeds padded input 4x8x8"),
    ("conv3d: {out_channels: 4, kernel_size: 3, groups: 2}", "[3, 4, 8, 8]", "conv3d 'conv3d1'): groups 2 does not divide in_channels 3"),
    ("maxpool3d: {kernel_size: 2, padding: [0, 2, 0]}", "[3, 4, 8, 8]", "maxpool3d 'maxpool3d1'): padding 2 exceeds half the kernel_size 2"),
    ("avgpool3d: {kernel_size: 3, padding: 1}", "[1, 2, 8, 8]", "avgpool3d 'avgpool3d1'): kernel_size 3x3x3 exceeds the unpadded input 2x8x8"),
    ("convtranspose1d: {out_channels: 2, kernel_size: 3, stride: 2, output_padding: 2}", "[3, 8]",
     "convtranspose1d 'convtranspose1d1'): output_padding 2 must be smaller than stride or dilation"),
    ("convtranspose1d: {out_channels: 2, kernel_size: 1, padding: 1}", "[3, 1]",
     "convtranspose1d 'convtranspose1d1'): padding 1 leaves no output (size -1)"),
]


@pytest.mark.parametrize("layer, shape, message", BAD, ids=[b[0][:60] for b in BAD])
def test_bad_input_is_one_line_exit_2(cli, write, layer: str, shape: str, message: str) -> None:
    path = write("bad.yaml", f"input: {shape}\nlayers:\n  - {layer}\n")
    run = cli("shapes", path)
    assert run.status == 2 and run.out == ""
    assert run.err == f"error: {path}:3: layers[0] ({message}\n"


def test_input_takes_up_to_four_numbers(cli, write) -> None:
    assert analyse({"input": "3x4x8x8", "layers": [{"conv3d": {"out_channels": 2, "kernel_size": 1}}]}).output_shape == (1, 2, 4, 8, 8)
    path = write("five.yaml", "input: [3, 4, 8, 8, 2]\nlayers: [relu]\n")
    run = cli("shapes", path)
    assert run.status == 2 and run.err.startswith(f"error: {path}:1: input must be 1 to 4 positive integers")


def test_thop_matches_modules_by_exact_class() -> None:
    """The blind spot the README documents: thop counts nn.Conv3d, but 0 for a trivial subclass of it."""
    torch = pytest.importorskip("torch")
    thop = pytest.importorskip("thop")

    class MyConv3d(torch.nn.Conv3d):
        pass

    x = torch.zeros(1, 2, 3, 4, 5)
    stock = thop.profile(torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, bias=False)), inputs=(x,), verbose=False)[0]
    sub = thop.profile(torch.nn.Sequential(MyConv3d(2, 4, 3, bias=False)), inputs=(x,), verbose=False)[0]
    # output 4 x 1 x 2 x 3 elements, each 2·27 MACs
    assert (int(stock), int(sub)) == (4 * 1 * 2 * 3 * 2 * 27, 0)


def test_a_size_list_of_the_wrong_length_on_the_command_line_is_refused(cli) -> None:
    """-l conv3d:kernel_size=3x5 is a pair for a 3-D kernel: refused, not cycled to 3x5x3x5x3x5."""
    run = cli("summary", "-l", "conv3d:out_channels=2,kernel_size=3x5", "--input", "2x4x4x4")
    assert run.status == 2 and run.out == ""
    assert run.err == ("error: --layer:1: layers[0] (conv3d 'conv3d1'): kernel_size: expected one value or a triple"
                       " [d, h, w], got [3, 5] (2 entries for 3 spatial dims)\n")


def test_a_cubic_kernel_counts_by_hand(cli) -> None:
    """conv3d 2->2, k3 on 4x4x4: weight 2·2·27 + bias 2 = 110 params; output 2x2x2, 2·8·(2·27) = 864 MACs."""
    run = cli("summary", "-l", "conv3d:out_channels=2,kernel_size=[3,3,3]", "--input", "2x4x4x4", "-f", "json")
    assert run.status == 0, run.err
    total = json.loads(run.out)["total"]
    assert (total["params"], total["macs"]) == (110, 864)
