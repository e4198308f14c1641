"""Counting conventions: how each peer tool counts a layer, as layer classes declare it.

A layer's `peer_costs(x, y)` returns rows (category, {convention: value}), where value is
- an int: multiply-accumulates as that tool counts them for the whole batch;
- for ptflops, a pair (per-batch hook part A, functional part B): ptflops reports
  int(ΣA / N + ΣB), dividing only its module-hook part by the batch size;
- None: the tool does not count this layer at all (it warns, or silently skips it).
The 'torch' convention is FlopCounterMode's count divided by two (it reports FLOPs).
"""

from __future__ import annotations

from typing import Any

CONVENTIONS = ("layercalc", "torch", "fvcore", "thop", "ptflops", "torchinfo")
CONV, BIAS, NORM, ACT, POOL, ADD, CONCAT = (
    "conv/linear", "bias", "normalisation", "activations", "pooling", "residual adds", "concat",
)
EMBED, PRODUCT = "embeddings", "elementwise products"
RECURRENT = "recurrent"  # the gate matrix products of lstm, gru and rnn
ATTN = "attention"  # q·kᵀ and A·v (and what a tool adds around them: scaling, softmax)
RESAMPLE = "resampling"  # upsampling's interpolation, pixel shuffle
CATEGORIES = (CONV, RECURRENT, ATTN, BIAS, NORM, ACT, POOL, ADD, CONCAT, EMBED, PRODUCT, RESAMPLE)

Value = Any  # int | tuple[int, int] | None
CostRow = tuple[str, dict[str, Value]]


NOT_COUNTED = "not counted"
# FlopCounterMode counts a backward pass (and layercalc's own rule is checked against it); the
# other peer tools count forward passes only, so a "training" figure under them would be no tool's
TRAINING_CONVENTIONS = ("layercalc", "torch")
PEERS = tuple(c for c in CONVENTIONS if c != "layercalc")  # the tools whose counts layercalc reproduces


def rules(others: str = NOT_COUNTED, **tools: str) -> dict[str, str]:
    """How each peer tool counts a layer type, in words: the named tools' rules, `others` for the rest."""
    unknown = set(tools) - set(PEERS)
    assert not unknown, unknown
    return {c: tools.get(c, others) for c in PEERS}


def row(category: str, **values: Value) -> CostRow:
    """One category's cost under each convention; conventions not named do not count it."""
    unknown = set(values) - set(CONVENTIONS)
    assert not unknown, unknown
    return category, {c: values.get(c) for c in CONVENTIONS}


def tally(values: list[Value], convention: str, batch: int) -> int | None:
    """The convention's total over many layers' values; None when none of them is counted."""
    counted = [v for v in values if v is not None]
    if not counted:
        return None
    if convention == "ptflops":  # the hook part is averaged over the batch, the rest is not
        hook = sum(v[0] for v in counted)
        functional = sum(v[1] for v in counted)
        try:  # ptflops sums in floats and truncates: its stored totals follow that rounding
            return int(hook / batch + functional)
        except OverflowError:  # past 10^308 no float holds the count: the same sum, exact
            from fractions import Fraction  # only for such sums

            return int(Fraction(hook) / batch + Fraction(functional))
    return sum(counted)
