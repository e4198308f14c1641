"""layercalc.kernels.pool against PyTorch autograd (float64): outputs and ∇x.

Expected values come from torch.nn.functional, never from the code under test. Geometries are
drawn by hypothesis (derandomized) within PyTorch's own limits (padding <= kernel/2) and cover
stride, padding, dilation, ceil_mode windows that hang off the end, count_include_pad, ties
(the gradient goes to the first maximum, as in PyTorch), and 1-D pools run as height 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layercalc.kernels import pool

torch = pytest.importorskip("torch")
F = torch.nn.functional

FAST = settings(max_examples=40, deadline=None, derandomize=True)


def close(got: Any, expected: Any, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """got (numpy) equals expected (a torch tensor) in shape, dtype and value (NaN equal to NaN)."""
    want = expected.detach().numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def sample(rng: np.random.Generator, shape: tuple[int, ...], ties: bool) -> np.ndarray:
    """Standard normal values, or with ties a few small integers, so windows hold equal maxima."""
    return rng.integers(-2, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)


def every_window_sees_input(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> bool:
    """Whether each window (PyTorch's count) has a tap inside the input.

    A dilated window can fall wholly in the padding (e.g. L=1, k=2, d=2, p=1): PyTorch's max
    pool then outputs −inf and its backward writes the gradient out of bounds (a heap
    corruption), so there is no reference to compare with; such geometries are left out.
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return all(any(0 <= o * s - p + t * d < size for t in range(k)) for o in range(out))


@st.composite
def pool_cases(draw: Any, dilated: bool) -> dict[str, Any]:
    """A random pooling geometry PyTorch accepts: padding <= kernel // 2, at least one window."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilated else (1, 1)
    p = tuple(draw(st.integers(0, k[a] // 2)) for a in range(2))
    hw = tuple(draw(st.integers(max(1, d[a] * (k[a] - 1) + 1 - 2 * p[a]), d[a] * (k[a] - 1) + 8)) for a in range(2))
    ceil = draw(st.booleans())
    assume(all(every_window_sees_input(hw[a], k[a], s[a], p[a], d[a], ceil) for a in range(2)))
    return dict(
        n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), hw=hw, k=k, s=s, p=p, d=d,
        ceil=ceil, cip=draw(st.booleans()), ties=draw(st.booleans()),
    )


def run_maxpool(case: dict[str, Any], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = sample(rng, (case["n"], case["c"], *case["hw"]), case["ties"])
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool2d(tx, case["k"], case["s"], case["p"], case["d"], ceil_mode=case["ceil"])
    y, cache = pool.maxpool2d_forward(x, case["k"], case["s"], case["p"], case["d"], case["ceil"])
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.maxpool2d_backward(dy, cache), tx.grad)


def run_avgpool(case: dict[str, Any], seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["n"], case["c"], *case["hw"]))
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, case["k"], case["s"], case["p"], ceil_mode=case["ceil"], count_include_pad=case["cip"])
    y, cache = pool.avgpool2d_forward(x, case["k"], case["s"], case["p"], case["ceil"], case["cip"])
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.avgpool2d_backward(dy, cache), tx.grad)


@FAST
@given(pool_cases(dilated=True))
def test_maxpool2d_random(case: dict[str, Any]) -> None:
    run_maxpool(case)


@FAST
@given(pool_cases(dilated=False))
def test_avgpool2d_random(case: dict[str, Any]) -> None:
    run_avgpool(case)


CASES = [
    # ResNet's stem pool: 3x3 stride 2 padding 1
    dict(n=2, c=3, hw=(9, 8), k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1), ceil=False, cip=True, ties=False),
    # ceil_mode: the last window starts inside the input and hangs past it (and past the padding)
    dict(n=1, c=2, hw=(6, 6), k=(3, 3), s=(2, 2), p=(0, 0), d=(1, 1), ceil=True, cip=True, ties=False),
    dict(n=1, c=2, hw=(5, 5), k=(2, 2), s=(2, 2), p=(1, 1), d=(1, 1), ceil=True, cip=True, ties=False),
    dict(n=1, c=2, hw=(7, 7), k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1), ceil=True, cip=False, ties=False),
    # ceil_mode where the would-be last window starts in the right padding: dropped
    dict(n=1, c=1, hw=(4, 4), k=(2, 2), s=(3, 3), p=(1, 1), d=(1, 1), ceil=True, cip=True, ties=False),
    # non-square, every argument a different pair
    dict(n=1, c=2, hw=(10, 7), k=(3, 2), s=(2, 3), p=(1, 1), d=(1, 1), ceil=True, cip=False, ties=False),
    # all values equal: every window's gradient goes to its first element
    dict(n=1, c=1, hw=(5, 6), k=(3, 3), s=(1, 2), p=(1, 1), d=(1, 1), ceil=True, cip=True, ties=True),
]


@pytest.mark.parametrize("case", CASES)
def test_maxpool2d_cases(case: dict[str, Any]) -> None:
    run_maxpool(case)


@pytest.mark.parametrize("case", CASES)
def test_avgpool2d_cases(case: dict[str, Any]) -> None:
    run_avgpool(case)


def test_maxpool2d_all_equal_first_element_wins() -> None:
    """Constant input, overlapping windows: PyTorch sends each window's gradient to its first element only."""
    x = np.ones((1, 1, 4, 4))
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool2d(tx, 2, 1)
    y, cache = pool.maxpool2d_forward(x, (2, 2), (1, 1), (0, 0), (1, 1), False)
    dy = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    ty.backward(torch.tensor(dy))
    dx = pool.maxpool2d_backward(dy, cache)
    close(dx, tx.grad)
    assert dx[0, 0, :3, :3].tolist() == dy[0, 0].tolist() and dx[0, 0, 3].sum() == dx[0, 0, :, 3].sum() == 0


def test_maxpool2d_nan_wins_as_in_pytorch() -> None:
    """A NaN in a window makes its max NaN, and PyTorch's gradient goes to the (last) NaN."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[0, 1, 4, 0] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool2d(tx, 3, 2, 1)
    y, cache = pool.maxpool2d_forward(x, (3, 3), (2, 2), (1, 1), (1, 1), False)
    np.testing.assert_array_equal(np.isnan(y), torch.isnan(ty).numpy())
    np.testing.assert_allclose(y, ty.detach().numpy())
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.maxpool2d_backward(dy, cache), tx.grad)


@FAST
@given(
    k=st.integers(1, 5), s=st.integers(1, 3), d=st.integers(1, 3), pfrac=st.integers(0, 2), extra=st.integers(0, 8),
    ceil=st.booleans(), cip=st.booleans(), ties=st.booleans(),
)
def test_pool1d_as_height_one(k: int, s: int, d: int, pfrac: int, extra: int, ceil: bool, cip: bool, ties: bool) -> None:
    """max_pool1d / avg_pool1d via the 2-D kernels with H = 1 and (1, k) pairs."""
    p = min(pfrac, k // 2)
    rng = np.random.default_rng(3)
    length = max(1, d * (k - 1) + 1 - 2 * p) + extra
    assume(every_window_sees_input(length, k, s, p, d, ceil))
    x = sample(rng, (2, 3, length), ties)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool1d(tx, k, s, p, d, ceil_mode=ceil)
    y, cache = pool.maxpool2d_forward(x[:, :, None], (1, k), (1, s), (0, p), (1, d), ceil)
    close(y[:, :, 0], ty)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    close(pool.maxpool2d_backward(dy[:, :, None], cache)[:, :, 0], tx.grad)

    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool1d(tx, k, s, p, ceil_mode=ceil, count_include_pad=cip)
    y, cache = pool.avgpool2d_forward(x[:, :, None], (1, k), (1, s), (0, p), ceil, cip)
    close(y[:, :, 0], ty)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    close(pool.avgpool2d_backward(dy[:, :, None], cache)[:, :, 0], tx.grad)


def test_pools_float32() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    y, cache = pool.maxpool2d_forward(x, (3, 3), (2, 2), (1, 1), (1, 1), True)
    close(y, F.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True))
    assert pool.maxpool2d_backward(np.ones_like(y), cache).dtype == np.float32
    y, cache = pool.avgpool2d_forward(x, (3, 3), (2, 2), (1, 1), True, False)
    close(y, F.avg_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True, count_include_pad=False), rtol=1e-6, atol=1e-6)
    assert pool.avgpool2d_backward(np.ones_like(y), cache).dtype == np.float32


# ---------------------------------------------------------------------------------------------
# adaptive pools
# ---------------------------------------------------------------------------------------------


@FAST
@given(
    h=st.integers(1, 10), w=st.integers(1, 10), oh=st.integers(1, 10), ow=st.integers(1, 10),
    kind=st.sampled_from(["avg", "max"]), ties=st.booleans(),
)
def test_adaptive_pools_random(h: int, w: int, oh: int, ow: int, kind: str, ties: bool) -> None:
    """PyTorch's windows [floor(i·L/out), ceil((i+1)·L/out)), outputs larger than inputs included."""
    rng = np.random.default_rng(5)
    x = sample(rng, (2, 3, h, w), ties)
    forward = getattr(pool, f"adaptive_{kind}pool2d_forward")
    backward = getattr(pool, f"adaptive_{kind}pool2d_backward")
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(F, f"adaptive_{kind}_pool2d")(tx, (oh, ow))
    y, cache = forward(x, (oh, ow))
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(backward(dy, cache), tx.grad)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("length, out", [(7, 1), (10, 3), (5, 7), (1, 4), (9, 9)])
def test_adaptive_pool1d_as_height_one(kind: str, length: int, out: int) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, length))
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(F, f"adaptive_{kind}_pool1d")(tx, out)
    y, cache = getattr(pool, f"adaptive_{kind}pool2d_forward")(x[:, :, None], (1, out))
    close(y[:, :, 0], ty)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    close(getattr(pool, f"adaptive_{kind}pool2d_backward")(dy[:, :, None], cache)[:, :, 0], tx.grad)


def test_resnet_head_7x7_average() -> None:
    """The seed's last slide: a 7x7 average pool over 512 channels, to 1x1."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 512, 7, 7))
    y, _ = pool.adaptive_avgpool2d_forward(x, (1, 1))
    close(y, F.adaptive_avg_pool2d(torch.tensor(x), 1))
    y2, _ = pool.avgpool2d_forward(x, (7, 7), (7, 7), (0, 0), False, True)
    close(y2, F.avg_pool2d(torch.tensor(x), 7))


# ---------------------------------------------------------------------------------------------
# 3-D pools through the same kernels
# ---------------------------------------------------------------------------------------------


@st.composite
def pool3d_cases(draw: Any) -> dict[str, Any]:
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    s = tuple(draw(st.integers(1, 3)) for _ in range(3))
    p = tuple(draw(st.integers(0, k[a] // 2)) for a in range(3))
    d = tuple(draw(st.integers(1, 2)) for _ in range(3)) if draw(st.booleans()) else (1, 1, 1)
    # avg_pool3d wants each input size >= the kernel (before padding)
    dhw = tuple(draw(st.integers(max(1, d[a] * (k[a] - 1) + 1 - 2 * p[a], k[a]), d[a] * (k[a] - 1) + 5)) for a in range(3))
    ceil = draw(st.booleans())
    assume(all(every_window_sees_input(dhw[a], k[a], s[a], p[a], d[a], ceil) for a in range(3)))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 2)), dhw=dhw, k=k, s=s, p=p, d=d, ceil=ceil,
                cip=draw(st.booleans()), ties=draw(st.booleans()))


@FAST
@given(pool3d_cases())
def test_pool3d_random(case: dict[str, Any]) -> None:
    """max_pool3d (ties and dilation included) and avg_pool3d (undilated) against torch: y and ∇x."""
    rng = np.random.default_rng(9)
    x = sample(rng, (case["n"], case["c"], *case["dhw"]), case["ties"])
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool3d(tx, case["k"], case["s"], case["p"], case["d"], ceil_mode=case["ceil"])
    y, cache = pool.maxpool_forward(x, case["k"], case["s"], case["p"], case["d"], case["ceil"])
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.maxpool_backward(dy, cache), tx.grad)
    if case["d"] != (1, 1, 1):
        return
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool3d(tx, case["k"], case["s"], case["p"], ceil_mode=case["ceil"], count_include_pad=case["cip"])
    y, cache = pool.avgpool_forward(x, case["k"], case["s"], case["p"], case["ceil"], case["cip"])
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.avgpool_backward(dy, cache), tx.grad)


@FAST
@given(sizes=st.tuples(*[st.integers(1, 7)] * 3), outs=st.tuples(*[st.integers(1, 7)] * 3))
def test_adaptive_avgpool3d_random(sizes: tuple[int, int, int], outs: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, *sizes))
    tx = torch.tensor(x, requires_grad=True)
    ty = F.adaptive_avg_pool3d(tx, outs)
    y, cache = pool.adaptive_avgpool_forward(x, outs)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.adaptive_avgpool_backward(dy, cache), tx.grad)


def test_maxpool3d_all_equal_first_element_wins() -> None:
    """Constant input: each window's gradient goes to its first element in (d, h, w) order, as PyTorch."""
    x = np.ones((1, 1, 3, 3, 3))
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool3d(tx, 2, 1)
    y, cache = pool.maxpool_forward(x, (2, 2, 2), (1, 1, 1), (0, 0, 0), (1, 1, 1), False)
    dy = np.arange(1.0, 9.0).reshape(1, 1, 2, 2, 2)
    ty.backward(torch.tensor(dy))
    dx = pool.maxpool_backward(dy, cache)
    close(dx, tx.grad)
    assert dx[0, 0, :2, :2, :2].tolist() == dy[0, 0].tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, k, s, p, d, ceil",
    [
        ((2, 3, 8, 9), (2, 2), (2, 2), (1, 1), (1, 1), False),  # disjoint windows, padding winners dropped
        ((1, 2, 9, 10), (2, 3), (3, 4), (0, 1), (1, 1), True),  # disjoint, strides past the span: inputs no window sees
        ((1, 2, 9, 10), (3, 3), (2, 2), (1, 1), (1, 1), True),  # overlapping (ResNet's): shared winners summed
        ((1, 2, 4, 6, 5), (2, 2, 2), (2, 2, 2), (0, 1, 1), (1, 1, 1), True),  # 3-D, disjoint
        ((1, 2, 5, 6, 7), (3, 2, 3), (2, 1, 2), (1, 1, 0), (1, 2, 1), False),  # 3-D, overlapping, dilated
    ],
)
def test_maxpool_gradient_both_scatters(shape: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...],
                                        d: tuple[int, ...], ceil: bool, dtype: Any) -> None:
    """Max pooling's ∇x, disjoint windows (a plain scatter) and overlapping ones (a summing one), in ∇y's dtype, against torch."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(F, f"max_pool{len(k)}d")(tx, k, s, p, d, ceil_mode=ceil)
    y, cache = pool.maxpool_forward(x, k, s, p, d, ceil)
    close(y, ty)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    close(pool.maxpool_backward(dy, cache), tx.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools_in_parts(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planes pooled a few at a time (a cache budget below one plane) give torch's y and ∇x, a NaN plane included."""
    monkeypatch.setattr(pool, "_CACHE_BYTES", 1)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 5, 7, 6))
    x[1, 2, 0, 1, 1] = x[0, 1, 3, 4, 5] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    if kind == "max":
        ty = F.max_pool3d(tx, 3, 2, 1, ceil_mode=True)
        y, cache = pool.maxpool_forward(x, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), True)
        backward = pool.maxpool_backward
    else:
        ty = F.avg_pool3d(tx, 2, (1, 2, 3), 1, count_include_pad=False)
        y, cache = pool.avgpool_forward(x, (2, 2, 2), (1, 2, 3), (1, 1, 1), False, False)
        backward = pool.avgpool_backward
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(backward(dy, cache), tx.grad)
