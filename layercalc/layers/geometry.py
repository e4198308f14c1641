"""PyTorch's sliding-window size formulas, in exact integer arithmetic, one spatial dim at a time:
the shape rules and the NumPy kernels of every rank use these same functions."""

from __future__ import annotations


def conv_out(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a convolution: floor((L + pads - d(k-1) - 1) / s) + 1 (may be <= 0)."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pool_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of max/avg pooling, with PyTorch's ceil_mode rule.

    With ceil_mode a last partial window is kept only if it starts inside the input or the
    left padding, which is why the result is decremented when (out - 1) * s >= L + p.
    """
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def conv_transpose_out(size: int, kernel: int, stride: int, pad: int, dilation: int, output_padding: int) -> int:
    """Output length of a transposed convolution: (L-1)s - 2p + d(k-1) + output_padding + 1."""
    return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


def same_padding(kernel: int, dilation: int) -> tuple[int, int]:
    """PyTorch's padding='same' for stride 1: d(k-1) in all, the odd one extra on the right."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2
