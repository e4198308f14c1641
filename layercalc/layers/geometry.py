"""PyTorch's sliding-window size formulas, in exact integer arithmetic, one spatial dim at a time:
the shape rules and the NumPy kernels of every rank use these same functions; and the one rule
by which every N-d argument (kernel_size, stride, padding, output_size, ...) is read per dim."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, SchemaError

DIM_WORDS = {1: "a list [l]", 2: "a pair [h, w]", 3: "a triple [d, h, w]"}  # one value per spatial dim, by rank


def per_dim(value: Any, rank: int, name: str = "", error: type[ConfigError] = SchemaError) -> tuple[Any, ...]:
    """An argument of an N-d layer, one value per spatial dim: an int (or float, or null) stands for
    every dim; a list or tuple must have exactly `rank` entries, as PyTorch refuses any other length
    (a conv's weight would get the wrong number of dims). Raises `error` naming `name` otherwise."""
    if not isinstance(value, (tuple, list)):
        return (value,) * rank
    if len(value) != rank:
        shown = "[" + ", ".join("null" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
        entries = f"{len(value)} {'entry' if len(value) == 1 else 'entries'} for {rank} spatial dims"
        head = f"{name}: " if name else ""
        raise error(f"{head}expected one value or {DIM_WORDS.get(rank, f'{rank} values')}, got {shown} ({entries})", value=tuple(value))
    return tuple(value)


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
