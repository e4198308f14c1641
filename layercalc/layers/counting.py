"""Counting conventions: the tools layercalc reproduces and every decision that depends on which one.

Layers state facts, not conventions: the fused kernel they run as (`CostModel.fused_kernel`),
their backward as parts (`CostModel.backward_parts`: which gradient, how many MACs, which kernel
computes it) and each tool's count of their forward (`peer_counts`, rows of layers/peers.py). What
a convention makes of those facts is decided here only, so a new counting convention is an entry
in the tables below (and its values in the peer rows of the layers it counts).
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
from typing import Any, NamedTuple

CONVENTIONS = ("layercalc", "torch", "fvcore", "thop", "ptflops", "torchinfo")
PEERS = tuple(c for c in CONVENTIONS if c != "layercalc")  # the tools whose counts layercalc reproduces
# Variants of a convention: each equals its base wherever a layer's row does not name it. causal:
# layercalc's count with masked attention products counted over the pairs the mask leaves (the lower
# triangle, or a sliding window's band), as Megatron-LM and FlashAttention count them
VARIANTS = {"causal": "layercalc"}
CHOICES = CONVENTIONS + tuple(VARIANTS)  # what --convention accepts
# FlopCounterMode counts a backward pass (and layercalc's own rule is checked against it); the
# other peer tools count forward passes only, so a "training" figure under them would be no tool's
TRAINING_CONVENTIONS = ("layercalc", "torch", "causal")
# ptflops' values are pairs (module-hook part, functional part): it divides only the hook part by
# the batch size, so its totals fold the two parts apart
PAIRED = ("ptflops",)

# The fused kernels a layer may run as instead of separate operations.
ONEDNN_RNN = "oneDNN's fused recurrent kernel"  # a CPU float32 LSTM without projection
MHA_FAST_PATH = "nn.MultiheadAttention's fast path"  # eval, no grad: one native op
ENCODER_FAST_PATH = "nn.TransformerEncoderLayer's fast path"  # eval, no grad: one native op
SDPA = "scaled_dot_product_attention's CPU kernel"  # the attention products and their gradients
# the kernels that run only at inference: with autograd recording the layer runs as separate ops
INFERENCE_ONLY = (MHA_FAST_PATH, ENCODER_FAST_PATH)

# The fused kernels a convention has no rule for: it counts nothing of what one computes. fvcore
# traces the model, which switches the encoder's fast path off but not the attention's own; the
# tools that hook modules (thop, ptflops, torchinfo) switch every fast path off.
BLIND_TO: dict[str, tuple[str, ...]] = {
    "torch": (ONEDNN_RNN, MHA_FAST_PATH, ENCODER_FAST_PATH, SDPA),
    "fvcore": (MHA_FAST_PATH,),
}
# FlopCounterMode's convolution_backward formula prices a grouped conv's weight gradient as the
# ungrouped one: `groups` times the MACs computed
UNGROUPED_WEIGHT_GRAD = ("torch",)

Value = Any  # int | tuple[int, int] | None
CostRow = tuple[str, dict[str, Value]]


class Grad(NamedTuple):
    """One part of a layer's backward pass: MACs over the whole batch, and what computes them."""

    macs: int
    weight: bool  # a parameter gradient (dL/dW), which freezing the layer saves; else a dL/dx
    kernel: str | None = None  # the fused kernel that computes it (None: separate matrix products)
    groups: int = 1  # a grouped convolution's groups (for a weight gradient)
    masked: int | None = None  # the MACs of the pairs a mask leaves, which the causal convention counts


def blind(convention: str, kernel: str | None) -> bool:
    """True when the convention counts nothing of what `kernel` computes."""
    return kernel is not None and kernel in BLIND_TO.get(convention, ())


def seen(rows: list[CostRow], kernel: str | None, recording: bool) -> list[CostRow]:
    """A layer's peer rows as each convention sees them when the layer runs as `kernel`: nothing
    under a convention blind to it. With autograd recording, an inference-only kernel does not run."""
    if kernel is None or (recording and kernel in INFERENCE_ONLY):
        return rows
    hidden = [c for c in CONVENTIONS if blind(c, kernel)]
    return [(category, {**values, **dict.fromkeys(hidden)}) for category, values in rows] if hidden else rows


def recording_extra(inference: list[CostRow], recording: list[CostRow], convention: str) -> int:
    """MACs a training convention counts in a layer's forward with autograd recording beyond
    inference (a fast path off); 0 under a convention that counts no training."""
    if convention not in TRAINING_CONVENTIONS:
        return 0

    def total(rows: list[CostRow]) -> int:
        return sum(values[convention] or 0 for _, values in rows)

    return total(recording) - total(inference)


def grad_macs(parts: list[Grad], convention: str, weights_only: bool = False) -> int:
    """Backward MACs of a layer's parts as the convention counts them (only dL/dW if weights_only)."""
    total = 0
    for part in parts:
        if (weights_only and not part.weight) or blind(convention, part.kernel):
            continue
        ungrouped = part.weight and convention in UNGROUPED_WEIGHT_GRAD
        if convention == "causal" and part.masked is not None:
            total += part.masked
            continue
        total += part.macs * (part.groups if ungrouped else 1)
    return total


def tally(values: list[Value], convention: str, batch: int) -> int | None:
    """The convention's total over many layers' values; None when none of them is counted."""
    counted = [v for v in values if v is not None]
    if not counted:
        return None
    if convention in PAIRED:  # the hook part is averaged over the batch, the rest is not
        hook = sum(v[0] for v in counted)
        functional = sum(v[1] for v in counted)
        try:  # ptflops sums in floats and truncates: its stored totals follow that rounding
            return int(hook / batch + functional)
        except OverflowError:  # past 10^308 no float holds the count: the same sum, exact
            from fractions import Fraction  # only for such sums: start-up need not import it

            return int(Fraction(hook) / batch + Fraction(functional))
    return sum(counted)
