"""The NumPy conv and pooling kernels against PyTorch (forward and every gradient, float64)."""

from __future__ import annotations

import numpy as np
import pytest

from layercalc.kernels import conv, pool

torch = pytest.importorskip("torch")
F = torch.nn.functional


def close(a: np.ndarray, b: object) -> None:
    expected = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == expected.shape
    np.testing.assert_allclose(a, expected, rtol=1e-10, atol=1e-12)


def pair(v: object) -> tuple[int, int]:
    return v if isinstance(v, tuple) else (v, v)  # type: ignore[return-value]


CONVS = [  # (N, C, H, W, C_out, kernel, stride, padding, dilation, groups)
    (2, 4, 9, 8, 6, 3, 2, 1, 1, 2),
    (1, 3, 10, 10, 4, (3, 2), (2, 1), 0, (2, 1), 1),
    (2, 8, 7, 7, 8, 3, 1, 1, 1, 8),
    (1, 2, 5, 6, 3, 2, 3, 2, 2, 1),
    (3, 6, 11, 5, 4, (1, 3), 1, (0, 1), 1, 2),
    (1, 1, 1, 12, 2, (1, 5), (1, 2), (0, 2), (1, 1), 1),  # a 1-D conv as height 1
]


@pytest.mark.parametrize("n, c, h, w, co, k, s, p, d, g", CONVS)
def test_conv2d(n, c, h, w, co, k, s, p, d, g) -> None:
    rng = np.random.default_rng(0)
    k, s, p, d = pair(k), pair(s), pair(p), pair(d)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((co, c // g, *k)), rng.standard_normal(co)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = F.conv2d(tx, tw, tb, s, p, d, g)
    pads = ((p[0], p[0]), (p[1], p[1]))
    y, cache = conv.conv2d_forward(x, wt, b, s, pads, d, g)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = conv.conv2d_backward(dy, cache)
    close(dx, tx.grad), close(dw, tw.grad), close(db, tb.grad)
    close(conv.conv2d_dx_full_correlation(dy, wt, x.shape, s, pads, d, g), tx.grad)


def test_asymmetric_same_padding() -> None:
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 6, 7)), rng.standard_normal((3, 2, 4, 2))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = F.conv2d(tx, tw, None, 1, "same", (1, 2))
    # PyTorch's 'same': total d·(k-1), the odd one on the bottom/right
    y, cache = conv.conv2d_forward(x, w, None, (1, 1), ((1, 2), (1, 1)), (1, 2), 1)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(conv.conv2d_backward(dy, cache)[0], tx.grad)


@pytest.mark.parametrize("n, c, h, w, co, k, s, p, d, g", CONVS[:5])
def test_conv_transpose2d(n, c, h, w, co, k, s, p, d, g) -> None:
    rng = np.random.default_rng(2)
    k, s, p, d = pair(k), pair(s), pair(p), pair(d)
    op = tuple(max(si, di) - 1 for si, di in zip(s, d))  # the largest allowed output_padding
    co = co if co % g == 0 else g * 2
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, co // g, *k)), rng.standard_normal(co)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = F.conv_transpose2d(tx, tw, tb, s, p, op, g, d)
    y, cache = conv.conv_transpose2d_forward(x, wt, b, s, p, op, d, g)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = conv.conv_transpose2d_backward(dy, cache)
    close(dx, tx.grad), close(dw, tw.grad), close(db, tb.grad)


def test_kconv_matrix_is_the_conv() -> None:
    rng = np.random.default_rng(3)
    k, x = rng.standard_normal((3, 2)), rng.standard_normal((1, 1, 6, 5))
    pads = ((1, 1), (0, 0))
    m = conv.kconv_matrix(k, (6, 5), (2, 1), pads, (1, 2))
    y, cache = conv.conv2d_forward(x, k[None, None], None, (2, 1), pads, (1, 2), 1)
    np.testing.assert_allclose(m @ x.ravel(), y.ravel(), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(m.T @ dy.ravel(), conv.conv2d_backward(dy, cache)[0].ravel(), atol=1e-12)


POOLS = [  # (N, C, H, W, kernel, stride, padding, dilation, ceil_mode, count_include_pad)
    (2, 3, 9, 8, 3, 2, 1, 1, False, True),
    (1, 2, 7, 7, 3, 2, 1, 1, True, False),
    (1, 2, 5, 5, 2, 2, 1, 1, True, True),
    (2, 2, 9, 9, 3, 1, 0, 2, False, True),
    (1, 1, 6, 6, 3, 2, 0, 1, True, True),
    (1, 2, 10, 7, (3, 2), (2, 3), (1, 1), 1, True, False),
]


@pytest.mark.parametrize("n, c, h, w, k, s, p, d, ceil, cip", POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool2d(n, c, h, w, k, s, p, d, ceil, cip, ties) -> None:
    rng = np.random.default_rng(4)
    k, s, p, d = pair(k), pair(s), pair(p), pair(d)
    x = rng.standard_normal((n, c, h, w))
    x = np.round(x) if ties else x  # many equal values: the first maximum wins, as in PyTorch
    tx = torch.tensor(x, requires_grad=True)
    ty = F.max_pool2d(tx, k, s, p, d, ceil_mode=ceil)
    y, cache = pool.maxpool2d_forward(x, k, s, p, d, ceil)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.maxpool2d_backward(dy, cache), tx.grad)


@pytest.mark.parametrize("n, c, h, w, k, s, p, d, ceil, cip", [q for q in POOLS if q[7] == 1])
def test_avgpool2d(n, c, h, w, k, s, p, d, ceil, cip) -> None:
    rng = np.random.default_rng(5)
    k, s, p = pair(k), pair(s), pair(p)
    x = rng.standard_normal((n, c, h, w))
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, k, s, p, ceil_mode=ceil, count_include_pad=cip)
    y, cache = pool.avgpool2d_forward(x, k, s, p, ceil, cip)
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(pool.avgpool2d_backward(dy, cache), tx.grad)


@pytest.mark.parametrize("h, w, oh, ow", [(7, 7, 1, 1), (10, 7, 3, 4), (5, 5, 7, 3), (6, 9, 6, 9)])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pools(h, w, oh, ow, kind) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, h, w))
    fwd, bwd = getattr(pool, f"adaptive_{kind}pool2d_forward"), getattr(pool, f"adaptive_{kind}pool2d_backward")
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(F, f"adaptive_{kind}_pool2d")(tx, (oh, ow))
    y, cache = fwd(x, (oh, ow))
    close(y, ty)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    close(bwd(dy, cache), tx.grad)
