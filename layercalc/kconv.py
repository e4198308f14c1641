"""Convolution as a matrix: K_conv of a small single-channel conv2d, symbolically and checked.

vec(x ⋆ k) = K_conv · vec(x), so ∇x = K_convᵀ · vec(∇y), just as Linear's ∇x = Wᵀ∇z.
Rows are output positions y1.., columns input positions x1.. (row-major); an entry is the
kernel tap k1.. (row-major) that multiplies that input for that output, or 0.
"""

from __future__ import annotations

from typing import Any

from .errors import UsageError

Pair = tuple[int, int]


def parse_pair(text: str, what: str, low: int) -> Pair:
    """'3' -> (3, 3), '3x5' -> (3, 5); each at least `low`."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v < low for v in values):
        raise UsageError(f"{what} must be an integer >= {low} or HxW like 3x3, got {text!r}")
    return (values[0], values[-1])


def kconv(input_hw: Pair, kernel_hw: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> dict[str, Any]:
    """K_conv symbolically: {"shape", "output", "rows": [["k1", "k2", "0", ...], ...]}."""
    from .kernels.conv import kconv_index

    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    reach = [d * (k - 1) + 1 for k, d in zip(kernel_hw, dilation)]
    if any(r > n + 2 * p for r, n, p in zip(reach, input_hw, padding)):
        raise UsageError(f"kernel {kernel_hw[0]}x{kernel_hw[1]} exceeds padded input {input_hw[0] + 2 * padding[0]}x{input_hw[1] + 2 * padding[1]}")
    index = kconv_index(input_hw, kernel_hw, stride, pads, dilation)
    out_h = (input_hw[0] + 2 * padding[0] - reach[0]) // stride[0] + 1
    rows = [[f"k{j}" if j else "0" for j in row] for row in index.tolist()]
    return {
        "input": list(input_hw), "kernel": list(kernel_hw), "stride": list(stride), "padding": list(padding),
        "dilation": list(dilation), "output": [out_h, index.shape[0] // out_h], "shape": list(index.shape), "rows": rows,
    }


def check(input_hw: Pair, kernel_hw: Pair, stride: Pair, padding: Pair, dilation: Pair, seed: int = 0) -> list[dict[str, Any]]:
    """K_conv against the conv kernels on random numbers: forward, ∇x, and the flipped-kernel ∇x."""
    import numpy as np

    from .kernels.conv import conv2d_backward, conv2d_dx_full_correlation, conv2d_forward, kconv_matrix

    rng = np.random.default_rng(seed)
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    k = rng.standard_normal(kernel_hw)
    x = rng.standard_normal((1, 1, *input_hw))
    m = kconv_matrix(k, input_hw, stride, pads, dilation)
    y, cache = conv2d_forward(x, k[None, None], None, stride, pads, dilation, 1)
    dy = rng.standard_normal(y.shape)
    dx, _, _ = conv2d_backward(dy, cache)
    seed_dx = conv2d_dx_full_correlation(dy, k[None, None], x.shape, stride, pads, dilation, 1)
    results = []
    for what, expected, got in (
        ("vec(x ⋆ k) = K_conv · vec(x)", m @ x.ravel(), y.ravel()),
        ("∇x = K_convᵀ · vec(∇y)", m.T @ dy.ravel(), dx.ravel()),
        ("∇x = full correlation of ∇y with the flipped k", m.T @ dy.ravel(), seed_dx.ravel()),
    ):
        error = float(np.max(np.abs(expected - got)))
        tolerance = 1e-12 * (1 + float(np.max(np.abs(expected))))
        results.append({"check": what, "error": error, "tolerance": tolerance, "passed": error <= tolerance})
    return results
