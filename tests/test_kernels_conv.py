"""layercalc.kernels.conv against PyTorch autograd (float64): forward, ∇x, ∇w, ∇b; and K_conv.

Expected values come from torch.nn.functional (or, for K_conv's figure, a hand calculation),
never from the code under test. Geometries are drawn by hypothesis (derandomized, so a run is
reproducible and fast) and cover stride, symmetric and asymmetric padding (PyTorch's 'same' for
even kernels), dilation, groups (depthwise too), output_padding, 1-D convs run as height 1 and
natively, and 3-D convs and transposed convs through the same N-d kernels (K_conv too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layercalc.kernels import conv

torch = pytest.importorskip("torch")
F = torch.nn.functional

FAST = settings(max_examples=40, deadline=None, derandomize=True)


def close(got: Any, expected: Any, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """got (numpy) equals expected (a torch tensor or array) in shape and value."""
    want = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def leaf(a: np.ndarray) -> Any:
    """A float64 torch leaf tensor that records its gradient."""
    return torch.tensor(a, requires_grad=True)


def span(k: int, d: int) -> int:
    """The extent of a dilated kernel: d(k−1)+1."""
    return d * (k - 1) + 1


@st.composite
def conv_cases(draw: Any) -> dict[str, Any]:
    """A random valid conv2d: shapes, stride, ((top, bottom), (left, right)) padding, dilation, groups, bias."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    # the input must leave at least one window in the padded size
    hw = tuple(draw(st.integers(max(1, span(k[a], d[a]) - sum(pads[a])), span(k[a], d[a]) + 6)) for a in range(2))
    return dict(n=draw(st.integers(1, 2)), c=groups * cg, co=groups * cog, hw=hw, k=k, s=s, pads=pads, d=d, groups=groups, bias=draw(st.booleans()))


def close_grads(ours: tuple[Any, Any, Any], tx: Any, tw: Any, tb: Any) -> Any:
    """Our (∇x, ∇w, ∇b) against torch's leaf gradients (∇b None exactly when there is no bias); ∇x."""
    dx, dw, db = ours
    close(dx, tx.grad)
    close(dw, tw.grad)
    if tb is None:
        assert db is None
    else:
        close(db, tb.grad)
    return dx


def run_conv2d(case: dict[str, Any], seed: int = 0) -> None:
    """Our conv2d forward/backward and the seed's ∇x against torch (asymmetric padding via F.pad)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["c"], *case["hw"]))
    w = rng.standard_normal((case["co"], case["c"] // case["groups"], *case["k"]))
    b = rng.standard_normal(case["co"]) if case["bias"] else None
    (t, bt), (l, r) = case["pads"]
    tx, tw = leaf(x), leaf(w)
    tb = leaf(b) if b is not None else None
    ty = F.conv2d(F.pad(tx, (l, r, t, bt)), tw, tb, case["s"], 0, case["d"], case["groups"])
    y, cache = conv.conv_forward(x, w, b, case["s"], case["pads"], case["d"], case["groups"])
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx = close_grads(conv.conv_backward(dy, cache), tx, tw, tb)
    seed_dx = conv.conv_dx_full_correlation(dy, w, x.shape, case["s"], case["pads"], case["d"], case["groups"])
    close(seed_dx, tx.grad)
    np.testing.assert_allclose(seed_dx, dx, rtol=1e-10, atol=1e-12)


@FAST
@given(conv_cases())
def test_conv2d_random(case: dict[str, Any]) -> None:
    run_conv2d(case)


@pytest.mark.parametrize(
    "case",
    [
        # ResNet stem: 7x7 stride 2 padding 3
        dict(n=1, c=3, co=4, hw=(16, 15), k=(7, 7), s=(2, 2), pads=((3, 3), (3, 3)), d=(1, 1), groups=1, bias=False),
        # 1x1 stride 1, one sample: the input is its own column matrix (no im2col copy)
        dict(n=1, c=4, co=6, hw=(5, 7), k=(1, 1), s=(1, 1), pads=((0, 0), (0, 0)), d=(1, 1), groups=2, bias=True),
        # 1x1 strided shortcut
        dict(n=2, c=4, co=6, hw=(7, 6), k=(1, 1), s=(2, 2), pads=((0, 0), (0, 0)), d=(1, 1), groups=1, bias=True),
        # depthwise (groups = C) with a channel multiplier of 2, MobileNet style
        dict(n=2, c=5, co=10, hw=(8, 9), k=(3, 3), s=(2, 2), pads=((1, 1), (1, 1)), d=(1, 1), groups=5, bias=True),
        # depthwise, dilated, multiplier 1
        dict(n=1, c=4, co=4, hw=(9, 9), k=(3, 3), s=(1, 1), pads=((2, 2), (2, 2)), d=(2, 2), groups=4, bias=False),
        # stride leaves the last input rows untouched by any window (their gradient is 0)
        dict(n=1, c=2, co=3, hw=(8, 9), k=(3, 2), s=(3, 4), pads=((0, 0), (0, 0)), d=(1, 1), groups=1, bias=True),
        # kernel exactly the padded input
        dict(n=2, c=2, co=2, hw=(3, 2), k=(5, 4), s=(1, 1), pads=((1, 1), (1, 1)), d=(1, 1), groups=1, bias=True),
    ],
)
def test_conv2d_cases(case: dict[str, Any]) -> None:
    run_conv2d(case)


@pytest.mark.parametrize("k, d", [((4, 2), (1, 1)), ((2, 3), (1, 2)), ((4, 4), (3, 1)), ((1, 6), (2, 1))])
def test_conv2d_same_padding_as_pytorch(k: tuple[int, int], d: tuple[int, int]) -> None:
    """PyTorch's padding='same': total d(k−1) per axis, left = total // 2, the odd one right/bottom."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, *k)), rng.standard_normal(4)
    pads = tuple((di * (ki - 1) // 2, di * (ki - 1) - di * (ki - 1) // 2) for ki, di in zip(k, d))
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.conv2d(tx, tw, tb, 1, "same", d)
    y, cache = conv.conv_forward(x, w, b, (1, 1), pads, d, 1)
    close(y, ty)
    assert y.shape[2:] == x.shape[2:]
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = conv.conv_backward(dy, cache)
    close(dx, tx.grad), close(dw, tw.grad), close(db, tb.grad)
    close(conv.conv_dx_full_correlation(dy, w, x.shape, (1, 1), pads, d, 1), tx.grad)


@FAST
@given(
    n=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    cg=st.integers(1, 3),
    cog=st.integers(1, 3),
    k=st.integers(1, 6),
    s=st.integers(1, 3),
    d=st.integers(1, 3),
    same=st.booleans(),
    p=st.integers(0, 3),
    extra=st.integers(0, 8),
)
def test_conv1d_as_height_one(n: int, groups: int, cg: int, cog: int, k: int, s: int, d: int, same: bool, p: int, extra: int) -> None:
    """conv1d via the 2-D kernels with H = 1 and (1, k) pairs, against F.conv1d (incl. 'same')."""
    if same:
        s = 1
        total = d * (k - 1)
        pad_lr = (total // 2, total - total // 2)
    else:
        pad_lr = (p, p)
    length = max(1, span(k, d) - sum(pad_lr)) + extra
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, groups * cg, length))
    w = rng.standard_normal((groups * cog, cg, k))
    b = rng.standard_normal(groups * cog)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.conv1d(tx, tw, tb, s, "same" if same else p, d, groups)
    y4, cache = conv.conv_forward(x[:, :, None], w[:, :, None], b, (1, s), ((0, 0), pad_lr), (1, d), groups)
    close(y4[:, :, 0], ty)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = conv.conv_backward(dy[:, :, None], cache)
    close(dx[:, :, 0], tx.grad), close(dw[:, :, 0], tw.grad), close(db, tb.grad)
    close(conv.conv_dx_full_correlation(dy[:, :, None], w[:, :, None], x[:, :, None].shape, (1, s), ((0, 0), pad_lr), (1, d), groups)[:, :, 0], tx.grad)


def test_conv2d_float32() -> None:
    """float32 in, float32 out, matching torch's float32 to float32 precision."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.conv2d(tx, tw, tb, 2, 1, 1, 2)
    y, cache = conv.conv_forward(x, w, b, (2, 2), ((1, 1), (1, 1)), (1, 1), 2)
    close(y, ty, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    for got, want in zip(conv.conv_backward(dy, cache), (tx.grad, tw.grad, tb.grad)):
        close(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_no_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="exceeds the padded input"):
        conv.conv_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)


# ---------------------------------------------------------------------------------------------
# conv_transpose2d
# ---------------------------------------------------------------------------------------------


@st.composite
def transpose_cases(draw: Any) -> dict[str, Any]:
    """A random valid conv_transpose2d: output_padding < max(stride, dilation), output size >= 1."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    op = tuple(draw(st.integers(0, max(s[a], d[a]) - 1)) for a in range(2))
    hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    # PyTorch's size: (L−1)s − 2p + d(k−1) + output_padding + 1 must stay >= 1
    p = tuple(draw(st.integers(0, max(0, ((hw[a] - 1) * s[a] + d[a] * (k[a] - 1) + op[a]) // 2))) for a in range(2))
    return dict(n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 3)), cog=draw(st.integers(1, 3)), hw=hw, k=k, s=s, p=p, op=op, d=d, groups=groups, bias=draw(st.booleans()))


def run_transpose(case: dict[str, Any], seed: int = 4) -> None:
    rng = np.random.default_rng(seed)
    g = case["groups"]
    x = rng.standard_normal((case["n"], case["c"], *case["hw"]))
    w = rng.standard_normal((case["c"], case["cog"], *case["k"]))
    b = rng.standard_normal(case["cog"] * g) if case["bias"] else None
    tx, tw = leaf(x), leaf(w)
    tb = leaf(b) if b is not None else None
    ty = F.conv_transpose2d(tx, tw, tb, case["s"], case["p"], case["op"], g, case["d"])
    y, cache = conv.conv_transpose_forward(x, w, b, case["s"], case["p"], case["op"], case["d"], g)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close_grads(conv.conv_transpose_backward(dy, cache), tx, tw, tb)


@FAST
@given(transpose_cases())
def test_conv_transpose2d_random(case: dict[str, Any]) -> None:
    run_transpose(case)


@pytest.mark.parametrize(
    "case",
    [
        # the U-Net upsampler: 2x2 stride 2
        dict(n=2, c=4, cog=3, hw=(4, 5), k=(2, 2), s=(2, 2), p=(0, 0), op=(0, 0), d=(1, 1), groups=1, bias=True),
        # 3x3 stride 2 padding 1 output_padding 1: exactly doubles the size
        dict(n=1, c=4, cog=2, hw=(3, 4), k=(3, 3), s=(2, 2), p=(1, 1), op=(1, 1), d=(1, 1), groups=2, bias=True),
        # output_padding >= stride (allowed since < dilation): a tail no window of ∇y reaches back from
        dict(n=1, c=2, cog=2, hw=(3, 3), k=(2, 3), s=(1, 2), p=(0, 1), op=(2, 2), d=(3, 3), groups=1, bias=False),
        # a 1-D transposed conv as height 1
        dict(n=2, c=3, cog=2, hw=(1, 7), k=(1, 4), s=(1, 3), p=(0, 1), op=(0, 2), d=(1, 1), groups=1, bias=True),
    ],
)
def test_conv_transpose2d_cases(case: dict[str, Any]) -> None:
    run_transpose(case)


# ---------------------------------------------------------------------------------------------
# K_conv
# ---------------------------------------------------------------------------------------------


def test_kconv_index_seed_figure() -> None:
    """The seed's figure, corrected by hand: y_ij = Σ k_pq x_(i+p, j+q) on a 3x3 input, 2x2 kernel."""
    index = conv.kconv_index((3, 3), (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1))
    assert index.tolist() == [
        [1, 2, 0, 3, 4, 0, 0, 0, 0],
        [0, 1, 2, 0, 3, 4, 0, 0, 0],
        [0, 0, 0, 1, 2, 0, 3, 4, 0],
        [0, 0, 0, 0, 1, 2, 0, 3, 4],
    ]
    assert np.issubdtype(index.dtype, np.integer)


def test_kconv_index_stride_padding_by_hand() -> None:
    """4x4 input, 3x3 kernel, stride 2, padding 1: y1's window covers rows/cols −1..1, so only k5 k6 / k8 k9 land (on x1 x2 / x5 x6)."""
    index = conv.kconv_index((4, 4), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1))
    assert index.shape == (4, 16)
    assert index[0].tolist() == [5, 6, 0, 0, 8, 9] + [0] * 10
    # y4's window covers rows/cols 1..3: the whole kernel on x6 x7 x8 / x10 x11 x12 / x14 x15 x16
    assert index[3].tolist() == [0] * 5 + [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9]


@st.composite
def kconv_cases(draw: Any) -> tuple[Any, ...]:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    hw = tuple(draw(st.integers(max(1, span(k[a], d[a]) - sum(pads[a])), span(k[a], d[a]) + 4)) for a in range(2))
    return hw, k, s, pads, d


@FAST
@given(kconv_cases())
def test_kconv_matrix_is_the_conv(case: tuple[Any, ...]) -> None:
    """vec(x ⋆ k) = K_conv · vec(x) (against torch and our forward) and ∇x = K_convᵀ · vec(∇y)."""
    hw, k, s, pads, d = case
    rng = np.random.default_rng(5)
    kern, x = rng.standard_normal(k), rng.standard_normal((1, 1, *hw))
    m = conv.kconv_matrix(kern, hw, s, pads, d)
    (t, b), (l, r) = pads
    tx = leaf(x)
    ty = F.conv2d(F.pad(tx, (l, r, t, b)), torch.tensor(kern[None, None]), None, s, 0, d)
    assert m.shape == (ty.shape[2] * ty.shape[3], hw[0] * hw[1])
    np.testing.assert_allclose(m @ x.ravel(), ty.detach().numpy().ravel(), rtol=1e-12, atol=1e-12)
    y, cache = conv.conv_forward(x, kern[None, None], None, s, pads, d, 1)
    np.testing.assert_allclose(m @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(m.T @ dy.ravel(), tx.grad.numpy().ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.T @ dy.ravel(), conv.conv_backward(dy, cache)[0].ravel(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups, cg, cog", [(1, 2, 3), (2, 2, 1), (3, 1, 2)])
def test_kconv_full_is_the_layer(groups: int, cg: int, cog: int) -> None:
    """The whole layer's K_conv (channel blocks per group) against torch's conv2d."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, groups * cg, 5, 4))
    w = rng.standard_normal((groups * cog, cg, 3, 2))
    pads = ((1, 0), (1, 1))
    m = conv.kconv_full(w, x.shape, (2, 1), pads, (1, 2), groups)
    ty = F.conv2d(F.pad(torch.tensor(x), (1, 1, 1, 0)), torch.tensor(w), None, (2, 1), 0, (1, 2), groups)
    np.testing.assert_allclose(m @ x.ravel(), ty.numpy().ravel(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the same kernels at spatial rank 3 and natively at rank 1 (no height-1 lift)
# ---------------------------------------------------------------------------------------------


@st.composite
def conv3d_cases(draw: Any) -> dict[str, Any]:
    """A random valid conv3d: every size a triple, asymmetric padding per axis, groups."""
    groups = draw(st.sampled_from([1, 1, 2]))
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    d = tuple(draw(st.integers(1, 2)) for _ in range(3))
    s = tuple(draw(st.integers(1, 3)) for _ in range(3))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(3))
    dhw = tuple(draw(st.integers(max(1, span(k[a], d[a]) - sum(pads[a])), span(k[a], d[a]) + 3)) for a in range(3))
    return dict(n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 2)), co=groups * draw(st.integers(1, 2)),
                dhw=dhw, k=k, s=s, pads=pads, d=d, groups=groups, bias=draw(st.booleans()))


@FAST
@given(conv3d_cases())
def test_conv3d_random(case: dict[str, Any]) -> None:
    """The N-d conv forward, its three gradients and the flipped-kernel ∇x against F.conv3d; K_conv too."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((case["n"], case["c"], *case["dhw"]))
    w = rng.standard_normal((case["co"], case["c"] // case["groups"], *case["k"]))
    b = rng.standard_normal(case["co"]) if case["bias"] else None
    flat_pads = tuple(v for lo_hi in reversed(case["pads"]) for v in lo_hi)  # F.pad: last axis first
    tx, tw = leaf(x), leaf(w)
    tb = leaf(b) if b is not None else None
    ty = F.conv3d(F.pad(tx, flat_pads), tw, tb, case["s"], 0, case["d"], case["groups"])
    y, cache = conv.conv_forward(x, w, b, case["s"], case["pads"], case["d"], case["groups"])
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close_grads(conv.conv_backward(dy, cache), tx, tw, tb)
    close(conv.conv_dx_full_correlation(dy, w, x.shape, case["s"], case["pads"], case["d"], case["groups"]), tx.grad)
    # K_conv of the whole layer (one sample): vec(y − b) = K · vec(x) and ∇x = Kᵀ · vec(∇y)
    k = conv.kconv_full(w, x[:1].shape, case["s"], case["pads"], case["d"], case["groups"])
    bias = b.reshape(-1, 1, 1, 1) if b is not None else 0.0
    np.testing.assert_allclose(k @ x[0].ravel(), (y[0] - bias).ravel(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(k.T @ dy[0].ravel(), tx.grad.numpy()[0].ravel(), rtol=1e-10, atol=1e-10)


def test_kconv_index_3d_by_hand() -> None:
    """2x2x2 input, 2x2x2 kernel, no padding: one output, every tap on its own input, in row-major order."""
    index = conv.kconv_index((2, 2, 2), (2, 2, 2), (1, 1, 1), ((0, 0),) * 3, (1, 1, 1))
    assert index.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    # depth 3, kernel depth 2, stride 1: the second output's window starts one plane (4 inputs) later
    index = conv.kconv_index((3, 2, 2), (2, 2, 2), (1, 1, 1), ((0, 0),) * 3, (1, 1, 1))
    assert index[1].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]


@st.composite
def transpose_nd_cases(draw: Any, rank: int) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 2]))
    k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    s = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    d = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    op = tuple(draw(st.integers(0, max(s[a], d[a]) - 1)) for a in range(rank))
    sizes = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    p = tuple(draw(st.integers(0, max(0, ((sizes[a] - 1) * s[a] + d[a] * (k[a] - 1) + op[a]) // 2))) for a in range(rank))
    return dict(n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 2)), cog=draw(st.integers(1, 2)), sizes=sizes,
                k=k, s=s, p=p, op=op, d=d, groups=groups, bias=draw(st.booleans()))


@FAST
@given(st.sampled_from([1, 3]).flatmap(transpose_nd_cases))
def test_conv_transpose_1d_and_3d_random(case: dict[str, Any]) -> None:
    """conv_transpose1d natively (rank 1) and conv_transpose3d through the same kernel, against torch."""
    rank = len(case["sizes"])
    rng = np.random.default_rng(8)
    g = case["groups"]
    x = rng.standard_normal((case["n"], case["c"], *case["sizes"]))
    w = rng.standard_normal((case["c"], case["cog"], *case["k"]))
    b = rng.standard_normal(case["cog"] * g) if case["bias"] else None
    tx, tw = leaf(x), leaf(w)
    tb = leaf(b) if b is not None else None
    fn = F.conv_transpose1d if rank == 1 else F.conv_transpose3d
    ty = fn(tx, tw, tb, case["s"], case["p"], case["op"], g, case["d"])
    y, cache = conv.conv_transpose_forward(x, w, b, case["s"], case["p"], case["op"], case["d"], g)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close_grads(conv.conv_transpose_backward(dy, cache), tx, tw, tb)


# ---------------------------------------------------------------------------------------------
# the two ways of computing ∇x, each forced, against torch: gather (stride 1 only) and scatter
# ---------------------------------------------------------------------------------------------

DX_CASES = [
    # (N, C, Co, sizes, kernel, stride, ((lo, hi) per axis), dilation, groups)
    (1, 4, 6, (9, 8), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),  # ResNet's 3x3
    (2, 4, 6, (7, 9), (3, 2), (1, 1), ((2, 0), (0, 1)), (2, 1), 2),  # asymmetric padding, dilation, groups
    (1, 3, 3, (6, 6), (3, 3), (1, 1), ((4, 3), (3, 4)), (1, 1), 3),  # padding past the kernel's reach; depthwise
    (2, 5, 3, (6, 5), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # 1x1: no border
    (1, 2, 4, (11,), (4,), (1,), ((1, 2),), (3,), 2),  # 1-D, dilated
    (2, 2, 4, (4, 5, 6), (3, 2, 3), (1, 1, 1), ((1, 1), (0, 1), (2, 0)), (1, 2, 1), 1),  # 3-D
    (1, 2, 9, (3, 3), (2, 2), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # fewer ∇y columns (4) than rows (9)
]
STRIDED_CASES = [
    (1, 3, 4, (11, 10), (7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1), 1),  # the ResNet stem
    (2, 4, 4, (8, 7), (3, 3), (2, 3), ((1, 0), (1, 1)), (1, 2), 2),
    (1, 2, 8, (5, 5, 5), (3, 3, 3), (2, 2, 2), ((1, 1),) * 3, (1, 1, 1), 1),  # 3-D, more ∇y columns (27) than rows (8)
    (1, 2, 30, (5, 5, 5), (3, 3, 3), (2, 2, 2), ((1, 1),) * 3, (1, 1, 1), 1),  # 3-D, 27 ∇y columns < 30 rows
    # col2im by input phases (at least 4 taps a phase): 2-D padding past k//2; 3-D stride 1 in one axis; 1-D
    (1, 3, 4, (13, 12), (5, 4), (2, 2), ((3, 4), (2, 0)), (1, 1), 1),
    (2, 2, 4, (7, 8, 9), (4, 3, 4), (2, 1, 2), ((1, 2), (1, 1), (3, 0)), (1, 1, 1), 2),
    (1, 2, 3, (29,), (9,), (2,), ((5, 5),), (1,), 1),
]


def torch_conv_grads(case: tuple[Any, ...], dtype: Any) -> tuple[Any, ...]:
    """(x, w, ∇y, torch's ∇x) of one case, the padding done by F.pad (last axis first)."""
    n, c, co, sizes, k, s, pads, d, g = case
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, c, *sizes)).astype(dtype)
    w = rng.standard_normal((co, c // g, *k)).astype(dtype)
    tx = leaf(x)
    conv_nd = getattr(F, f"conv{len(sizes)}d")
    ty = conv_nd(F.pad(tx, tuple(v for lo_hi in reversed(pads) for v in lo_hi)), torch.tensor(w), None, s, 0, d, g)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.tensor(dy))
    return x, w, dy, tx.grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", ["gather", "scatter"])
@pytest.mark.parametrize("case", DX_CASES + STRIDED_CASES)
def test_dx_paths_against_torch(case: tuple[Any, ...], path: str, dtype: Any) -> None:
    """Each ∇x path on its own (gather for stride 1 only): 1-D to 3-D, groups, dilation, both GEMM orientations."""
    n, c, co, sizes, k, s, pads, d, g = case
    if path == "gather" and any(v != 1 for v in s):
        pytest.skip("the gather is a stride-1 identity")
    x, w, dy, want = torch_conv_grads(case, dtype)
    if path == "gather":
        dx = conv._dx_gather(dy, w, x.shape, pads, d, g)
    else:
        dy_mat = np.ascontiguousarray(dy.swapaxes(0, 1)).reshape(g, co // g, -1)
        dx = conv._dx_scatter(dy_mat, w.reshape(g, co // g, -1), x.shape, k, dy.shape[2:], s, pads, d)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    close(dx, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", DX_CASES + STRIDED_CASES)
def test_conv_backward_either_path_is_torch(case: tuple[Any, ...]) -> None:
    """conv_backward, whichever path it picks for the shape, gives torch's ∇x; strided convs never take the gather."""
    n, c, co, sizes, k, s, pads, d, g = case
    x, w, dy, want = torch_conv_grads(case, np.float64)
    _, cache = conv.conv_forward(x, w, None, s, pads, d, g)
    close(conv.conv_backward(dy, cache)[0], want)
    if any(v != 1 for v in s):
        assert not conv._gather_pays(x.shape, w.shape, s, pads, d)


@st.composite
def phase_cases(draw: Any, rank: int) -> tuple[Any, ...]:
    """A strided conv whose ∇x scatter may take the per-phase path: stride 2-3, kernel 2s-12 in 1-D,
    3-7 in 2-D, 2-4 in 3-D, dilation 1-3, padding up to past the kernel's reach, uneven sizes; as a DX_CASES tuple."""
    s = tuple(draw(st.integers(2, 3)) for _ in range(rank))
    k = tuple(draw(st.integers(*{1: (2 * sa, 12), 2: (3, 7), 3: (2, 4)}[rank])) for sa in s)
    d = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    pads = tuple((draw(st.integers(0, ka + 1)), draw(st.integers(0, ka + 1))) for ka in k)
    sizes = tuple(draw(st.integers(max(1, span(k[a], d[a]) - sum(pads[a])), span(k[a], d[a]) + 7)) for a in range(rank))
    g = draw(st.sampled_from([1, 2]))
    return (draw(st.integers(1, 2)), g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2)), sizes, k, s, pads, d, g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=st.sampled_from([1, 2, 3]).flatmap(phase_cases))
def test_dx_by_phases_against_torch(dtype: Any, case: tuple[Any, ...]) -> None:
    """The per-phase col2im (strided convs with enough taps a phase for the dtype) gives torch's ∇x,
    through conv_backward and as the forward of the transposed conv of the same weight."""
    n, c, co, sizes, k, s, pads, d, g = case
    assume(conv._phases_pay(k, s, d, np.dtype(dtype).itemsize))
    x, w, dy, want = torch_conv_grads(case, dtype)
    _, cache = conv.conv_forward(x, w, None, s, pads, d, g)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    close(conv.conv_backward(dy, cache)[0], want, rtol=tol, atol=tol)
    close(conv.conv_input_grad(dy, w, x.shape, s, pads, d, g), want, rtol=tol, atol=tol)


def test_gather_chosen_where_activations_outweigh_the_kernel() -> None:
    """By hand: ResNet's 3x3 64->64 at 56x56 moves 4,102,400 elements as a gather against 7,426,048 as a
    scatter; its 3x3 512->512 at 7x7 moves 5,236,736 (the kernel flip dominates) against 928,256."""
    same = ((1, 1), (1, 1))
    assert conv._gather_pays((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), same, (1, 1))
    assert not conv._gather_pays((1, 512, 7, 7), (512, 512, 3, 3), (1, 1), same, (1, 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in DX_CASES if len(c[3]) > 1 or c[3][0] > 3])
def test_dx_gather_in_slabs(case: tuple[Any, ...], dtype: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gather built slab by slab along the first spatial axis (as for columns too large to build at once) is torch's ∇x."""
    n, c, co, sizes, k, s, pads, d, g = case
    x, w, dy, want = torch_conv_grads(case, dtype)
    row_bytes = co * math.prod(k) * n * math.prod(sizes[1:]) * np.dtype(dtype).itemsize
    monkeypatch.setattr(conv, "WHOLE_MAX", row_bytes)  # any two rows exceed it
    monkeypatch.setattr(conv, "SLAB", 2 * row_bytes)  # slabs of two rows, the last one shorter when odd
    monkeypatch.setattr(conv, "SLAB_COLS", 1)  # however few GEMM columns that leaves
    assert len(conv._slabs(sizes[0], row_bytes)) == -(-sizes[0] // 2)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    close(conv._dx_gather(dy, w, x.shape, pads, d, g), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", DX_CASES + STRIDED_CASES)
def test_conv_in_slabs_is_torch(case: tuple[Any, ...], dtype: Any, rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and backward with the columns built `rows` output rows at a time and rebuilt by the
    backward (as for layers whose columns are too large to keep) give torch's y, ∇x, ∇w and ∇b."""
    n, c, co, sizes, k, s, pads, d, g = case
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(shape).astype(dtype) for shape in ((n, c, *sizes), (co, c // g, *k), (co,)))
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = getattr(F, f"conv{len(sizes)}d")(F.pad(tx, tuple(v for lo_hi in reversed(pads) for v in lo_hi)), tw, tb, s, 0, d, g)
    dy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.tensor(dy))
    row_bytes = c * math.prod(k) * n * math.prod(ty.shape[3:]) * np.dtype(dtype).itemsize
    monkeypatch.setattr(conv, "WHOLE_MAX", 0)  # every layer in slabs
    monkeypatch.setattr(conv, "SLAB", rows * row_bytes)
    monkeypatch.setattr(conv, "SLAB_COLS", 1)
    y, cache = conv.conv_forward(x, w, b, s, pads, d, g)
    if ty.shape[2] > rows:
        assert cache[0] is None  # in slabs, no columns kept: the backward rebuilds them
    tol = 1e-10 if dtype == np.float64 else 1e-4
    close(y, ty, rtol=tol, atol=tol)
    for ours, theirs in zip(conv.conv_backward(dy, cache), (tx.grad, tw.grad, tb.grad)):
        close(ours, theirs, rtol=tol, atol=tol)


ROW_CASES = [c for c in DX_CASES + STRIDED_CASES if len(c[3]) > 1 and c[7][0] == 1 and c[4][0] > c[5][0]] + [
    # ∇x by the gather, dilated in the other axes: 3-D, and 2-D in groups with two samples
    (1, 4, 2, (5, 6, 7), (3, 3, 2), (1, 1, 1), ((1, 1), (2, 2), (1, 0)), (1, 2, 1), 1),
    (2, 6, 4, (6, 9), (3, 3), (1, 1), ((1, 1), (2, 2)), (1, 3), 2),
]


@pytest.mark.parametrize("rows", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ROW_CASES)
def test_row_columns_are_torch(case: tuple[Any, ...], dtype: Any, rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row columns (the first axis's taps read from overlapping padded rows), `rows` output rows a
    slab, give torch's y, ∇x, ∇w and ∇b, and torch's ∇x as the transposed conv's forward (the gather
    for stride 1 builds its columns the same way)."""
    n, c, co, sizes, k, s, pads, d, g = case
    x, w, dy, want = torch_conv_grads(case, dtype)
    tx, tw, tb = leaf(x), leaf(w), leaf(np.arange(co, dtype=dtype))
    ty = getattr(F, f"conv{len(sizes)}d")(F.pad(tx, tuple(v for lo_hi in reversed(pads) for v in lo_hi)), tw, tb, s, 0, d, g)
    ty.backward(torch.tensor(dy))
    outs = tuple(ty.shape[2:])
    row = c * math.prod(k[1:]) * n * math.prod(outs[1:]) * np.dtype(dtype).itemsize  # one padded row's columns
    monkeypatch.setattr(conv, "WHOLE_MAX", 0)  # every layer in slabs
    monkeypatch.setattr(conv, "ROWS_COLS", 1)  # however narrow its rows
    monkeypatch.setattr(conv, "ROWS_MAX", ((rows - 1) * s[0] + k[0]) * row)
    built: list[tuple[int, int]] = []
    real = conv.row_im2col
    monkeypatch.setattr(conv, "row_im2col", lambda xp, geometry, lo, hi: built.append((lo, hi)) or real(xp, geometry, lo, hi))
    y, cache = conv.conv_forward(x, w, np.arange(co, dtype=dtype), s, pads, d, g)
    if outs[0] > 1:
        assert built[0] == (0, min(rows, outs[0]))  # the forward took the row columns, `rows` a slab
    tol = 1e-10 if dtype == np.float64 else 1e-4
    close(y, ty, rtol=tol, atol=tol)
    for ours, theirs in zip(conv.conv_backward(dy, cache), (tx.grad, tw.grad, tb.grad)):
        close(ours, theirs, rtol=tol, atol=tol)
    close(conv.conv_input_grad(dy, w, x.shape, s, pads, d, g), want, rtol=tol, atol=tol)


def test_row_columns_where_an_output_row_is_a_wide_gemm() -> None:
    """By hand: r3d_18's 3x3x3 64->64 at 8x28x28 has 28·28 = 784 GEMM columns an output depth row
    and its stem (3x7x7, stride 1 in depth) 784 too: row columns; its 128->128 at 4x14x14 has 196
    (at any batch), ResNet's 3x3 64->64 at 56x56 56 a row, a 2-D dilated first axis and a 1-D conv
    none: im2col."""
    ones = (1, 1, 1)
    assert conv._rows_pay(((3, 3, 3), ones, ones, 1), 1, (8, 28, 28))
    assert conv._rows_pay(((3, 7, 7), (1, 2, 2), ones, 1), 1, (8, 28, 28))
    assert not conv._rows_pay(((3, 3, 3), ones, ones, 1), 1, (4, 14, 14))
    assert not conv._rows_pay(((3, 3, 3), ones, ones, 1), 4, (4, 14, 14))  # a row counts one clip's columns
    assert conv._rows_pay(((3, 3, 3), ones, ones, 1), 2, (8, 28, 28))
    assert not conv._rows_pay(((3, 3), (1, 1), (1, 1), 1), 1, (56, 56))
    assert not conv._rows_pay(((3, 3), (1, 1), (2, 1), 1), 1, (56, 1024))
    assert not conv._rows_pay(((3,), (1,), (1,), 1), 1024, (56,))
    # one padded depth row of its row columns in float64: 64·3·3·784·8 = 3,612,672 bytes; 9 fit
    # the 32 MiB slab, so 7 output rows (rows 0-8 of the padded input) a slab
    xp = np.empty((1, 64, 10, 30, 30))
    assert conv._row_slabs(xp, ((3, 3, 3), ones, ones, 1), 1, (8, 28, 28)) == [(0, 7), (7, 8)]


def test_slabs_keep_enough_gemm_columns() -> None:
    """By hand: r3d_18's 3x3x3 64->64 at 8x28x28 in float64 has 64·27·28·28·8 = 10,838,016 bytes of
    columns per output depth row, over the 4 MiB slab, yet one row is only 784 GEMM columns: the
    slabs take two rows (1,568 columns) rather than one."""
    assert conv._slabs(8, 64 * 27 * 28 * 28 * 8, 28 * 28) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    # ResNet's 7x7/2 stem in float64: 147·112·8 = 131,712 bytes a row, 31 rows to the 4 MiB slab
    assert conv._slabs(112, 147 * 112 * 8, 112)[0] == (0, 31)


def test_results_outlive_the_scratch_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """y, ∇x, ∇w and ∇b of one call are untouched by the next call and by another thread's calls
    running at the same time: the reused temporaries are the calling thread's own."""
    import threading

    monkeypatch.setattr(conv, "WHOLE_MAX", 0)  # slabs, so the scratch products and columns are in use
    monkeypatch.setattr(conv, "SLAB_COLS", 1)
    case = (1, 16, 16, (48, 48), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    n, c, co, sizes, k, s, pads, d, g = case
    monkeypatch.setattr(conv, "SLAB", c * 9 * 48 * 8 * 8)  # eight output rows a slab

    def run(seed: int) -> list[Any]:
        rng = np.random.default_rng(seed)
        x, w, b = (rng.standard_normal(shape) for shape in ((n, c, *sizes), (co, c, *k), (co,)))
        y, cache = conv.conv_forward(x, w, b, s, pads, d, g)
        return [y, *conv.conv_backward(rng.standard_normal(y.shape), cache)]

    first = run(1)
    kept = [a.copy() for a in first]
    run(2)  # a second call reuses every buffer
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    alone = {seed: run(seed) for seed in range(10, 14)}
    together: dict[int, list[Any]] = {}
    start = threading.Barrier(4)

    def worker(seed: int) -> None:
        start.wait()
        for _ in range(5):
            together[seed] = run(seed)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in alone]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed, want in alone.items():
        for a, b in zip(together[seed], want):
            np.testing.assert_array_equal(a, b)
