"""How each peer tool counts a layer, as layer classes declare it: the op categories and the rows.

A layer's `peer_counts(x, y)` returns rows (category, {convention: value}), where value is
- an int: multiply-accumulates as that tool counts them for the whole batch;
- for ptflops, a pair (per-batch hook part A, functional part B): ptflops reports
  int(ΣA / N + ΣB), dividing only its module-hook part by the batch size;
- None: the tool does not count this layer at all (it warns, or silently skips it).
The 'torch' convention is FlopCounterMode's count divided by two (it reports FLOPs). Which
conventions there are, and what each makes of a fused kernel, is layers/counting.py's.
"""

from __future__ import annotations

# the conventions and tally are counting.py's; conventions.py, bytype.py and the CLI import them from here
from .counting import CHOICES, CONVENTIONS, PEERS, TRAINING_CONVENTIONS, VARIANTS, CostRow, Value, tally  # noqa: F401

CONV, BIAS, NORM, ACT, POOL, ADD, CONCAT = (
    "conv/linear", "bias", "normalisation", "activations", "pooling", "residual adds", "concat",
)
EMBED, PRODUCT = "embeddings", "elementwise products"
RECURRENT = "recurrent"  # the gate matrix products of lstm, gru and rnn
ATTN = "attention"  # q·kᵀ and A·v (and what a tool adds around them: scaling, softmax)
RESAMPLE = "resampling"  # upsampling's interpolation, pixel shuffle
CATEGORIES = (CONV, RECURRENT, ATTN, BIAS, NORM, ACT, POOL, ADD, CONCAT, EMBED, PRODUCT, RESAMPLE)

NOT_COUNTED = "not counted"


def rules(others: str = NOT_COUNTED, **tools: str) -> dict[str, str]:
    """How each peer tool counts a layer type, in words: the named tools' rules, `others` for the rest."""
    unknown = set(tools) - set(PEERS)
    assert not unknown, unknown
    return {c: tools.get(c, others) for c in PEERS}


def row(category: str, **values: Value) -> CostRow:
    """One category's cost under each convention; conventions not named do not count it, variants
    not named count it as their base does."""
    unknown = set(values) - set(CHOICES)
    assert not unknown, unknown
    counts = {c: values.get(c) for c in CONVENTIONS}
    return category, {**counts, **{v: values.get(v, counts[base]) for v, base in VARIANTS.items()}}
