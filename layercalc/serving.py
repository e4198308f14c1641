"""Serving plans: weights and KV-cache memory, prefill and decode cost, and roofline time bounds.

A decoder's cost per sequence at T positions is exactly a·T + b·T² MACs: everything but the
attention core costs the same per token, and the core of T queries over T keys costs b·T². So one
decode step at context p (the new token attends to p positions, itself included) costs a + b·p,
and a generation's sum over positions is a closed form, not a loop per token. a and b come from
the calculator at T = 1 and 2; T = 3 checks that the network really is of that form.

Every time is a lower bound (roofline): a step takes at least max(FLOPs / peak, bytes / bandwidth),
with the weights read once per step, the KV cache read up to the step's position, and nothing else
(no activations traffic, no kernel launch or communication time). Of a mixture of experts a step
reads only the experts its tokens are routed to, assuming the router spreads tokens evenly and
independently (ROUTING): top_k experts for one token, more for a batch, nearly all for a prompt. Memory counts weights, the KV
cache and one layer's input and output at the prompt (attention as FlashAttention runs it, without
the T×T scores); a serving engine's own reserve (CUDA graphs, fragmentation) is not in it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

from .analysis import Entry, Report, analyse
from .config import Network
from .errors import ConfigError, UsageError
from .gpus import DTYPE_PRECISION, Gpu
from .layers import numel

# bits per stored element of each weights / KV dtype a serving stack offers
DTYPE_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "fp8": 8, "int8": 8, "int4": 4}
ALIASES = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
           "float8": "fp8"}
QUANTIZED = ("int8", "int4")  # integer weights carry one fp16 scale per group of inputs
SCALE_BYTES = 2  # an fp16 scale
DEFAULT_GROUP = 128
ROUTING = ("of each mixture of experts a step reads only the experts its tokens choose, taking the router to"
           " spread tokens evenly and independently: of E experts with top_k = k, a step of n tokens reads"
           " E·(1 − (1 − k/E)^n) of them, rounded up (k for one token, nearly all for a long prompt)")


class Setup(NamedTuple):
    """What is served: devices, tensor-parallel degree, dtypes, batch and positions."""

    gpus: int
    tp: int
    weights_dtype: str
    kv_dtype: str
    batch: int
    prompt: int  # 0: the config's sequence length
    generate: int
    group_size: int


class Tensor(NamedTuple):
    """One weight tensor as serving sees it: rows × cols elements, stored `copies` times, of which a
    token runs through `runs` (fewer for an expert's: top_k of num_experts)."""

    rows: int
    cols: int
    copies: int
    runs: int
    matrix: bool  # a matmul's weight (quantizable, split by tensor parallelism); else a vector or a table
    lookup: bool  # a table read row by row (token embeddings): a step reads only the batch's rows
    owned: bool  # counted here (a tied weight is stored once, at its owner, but read by each user)


def dtype_name(name: str, what: str) -> str:
    """The canonical dtype of a name given on the command line; UsageError if unknown."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in DTYPE_BITS:
        raise UsageError(f"{what} must be one of {', '.join(DTYPE_BITS)}, got {name!r}")
    return key


def _leaves(report: Report) -> list[tuple[Entry, int]]:
    """Every analysed leaf layer with how many times it runs (repeats multiplied)."""
    return [(x.entry, x.copies) for x in report.executions(leaf=True)]


def weight_tensors(report: Report) -> list[Tensor]:
    """Every parameter tensor of the network, with how it is stored and read."""
    tensors = []
    for row in report.executions(leaf=True):
        layer, x = row.entry.layer, row.entry.input_shape
        shared = layer.shared_params()
        lookup = layer.input_ids() is not None
        for pname, shape in layer.param_shapes(x).items():
            rows, cols = shape[0], numel(shape) // shape[0] if shape[0] else 0
            tensors.append(Tensor(rows, cols, row.held, row.copies, len(shape) >= 2 and not lookup, lookup,
                                  pname not in shared))
    return tensors


def copies_read(t: Tensor, tokens: int) -> int:
    """How many stored copies of a tensor a step of `tokens` tokens reads: all of them, but of an
    expert's (a token runs through `runs` of the `copies`) those the tokens are routed to (ROUTING)."""
    if t.runs >= t.copies:
        return t.copies
    unread = t.copies * (1 - t.runs / t.copies) ** tokens
    return t.copies - math.floor(unread + 1e-9)  # rounded up; the margin keeps 6.000000001 unread at 6


def routed(tensors: list[Tensor]) -> bool:
    """True when a step may read only some copies of a tensor (a mixture of experts)."""
    return any(t.runs < t.copies for t in tensors)


def stored_bytes(t: Tensor, setup: Setup, base_bits: int) -> int:
    """Bytes one copy of a tensor takes on one device: matrices in the weights dtype (split by tp)."""
    if not t.owned:
        return 0
    if not t.matrix:
        return -(-t.rows * t.cols * base_bits // 8)
    rows = -(-t.rows // setup.tp)  # a matrix's output rows are split over the tensor-parallel group
    bits = DTYPE_BITS[setup.weights_dtype]
    packed = rows * -(-t.cols * bits // 8)
    scales = rows * -(-t.cols // setup.group_size) * SCALE_BYTES if setup.weights_dtype in QUANTIZED else 0
    return packed + scales


def read_bytes(t: Tensor, setup: Setup, base_bits: int, tokens: int) -> int:
    """Bytes one step reads of one copy of a tensor on one device, for `tokens` tokens in the step."""
    if t.lookup:
        return -(-min(tokens, t.rows) * t.cols * base_bits // 8)
    if t.owned:
        return stored_bytes(t, setup, base_bits)
    # a tied user (an output head sharing the embedding table) reads the owner's whole table
    return -(-t.rows * t.cols * base_bits // 8)


class DecoderCost(NamedTuple):
    """Per-sequence cost: a + b·p MACs for a token at context p; KV and workspace elements per position."""

    a: int
    b: Fraction
    kv_per_position: int
    workspace_per_position: int  # the largest layer's input and output together
    kv_heads: tuple[int, ...]


def _at(network: Network, length: int) -> Report:
    """The network analysed for one sequence of `length` positions."""
    shape = (length, *network.input[1:])
    return analyse(network._replace(input=shape, batch=1))


def _fit(reports: list[Report]) -> tuple[int, Fraction] | None:
    """(a, b) with MACs = a·T + b·T², from the reports of one sequence at T = 1, 2 and 3; None if
    the third does not follow from the first two (the cost has another form)."""
    macs = [r.total["macs"] for r in reports]
    b = Fraction(macs[1] - 2 * macs[0], 2)
    a = macs[0] - b
    return (int(a), b) if macs[2] == 3 * a + 9 * b and a.denominator == 1 else None


def length_cost(network: Network) -> tuple[int, Fraction] | None:
    """(a, b) with MACs = a·T + b·T² for one sequence of T positions, or None if the cost has another form.

    Fitted at T = 1 and 2 and checked at T = 3: a network of per-token layers and attention is exact.
    """
    return _fit([_at(network, t) for t in (1, 2, 3)]) if network.input else None


def kv_heads(report: Report) -> list[int]:
    """The key/value heads of every layer that keeps a KV cache, as often as it runs."""
    return [shape[1] for e, _ in _leaves(report) for shape in e.layer.cache_shapes(e.input_shape).values()]


def decoder_cost(network: Network) -> DecoderCost:
    """A decoder's per-token cost and KV cache; UsageError if the network is not a decoder."""
    if not network.input:
        raise UsageError(f"{network.file}: serve needs a sequence input, got a scalar")
    reports = [_at(network, t) for t in (1, 2, 3)]
    kv = [r.total.get("kv_cache_bytes", 0) // r.dtype_bytes for r in reports]
    if kv[0] == 0:
        raise UsageError(f"{network.file}: serve needs a decoder, a causal attention layer that keeps past keys "
                         "and values; this network has none")
    fit = _fit(reports)
    if fit is None or kv[1] != 2 * kv[0] or kv[2] != 3 * kv[0]:
        raise UsageError(f"{network.file}: serve needs a decoder whose cost is per token plus attention over past "
                         "tokens; this network's cost grows otherwise with the sequence")
    workspace = max(numel(e.input_shape) + numel(e.output_shape) for e, _ in _leaves(reports[0]))
    return DecoderCost(fit[0], fit[1], kv[0], workspace, tuple(kv_heads(reports[0])))


def _sum_linear(c0: Fraction, c1: Fraction, lo: int, hi: int) -> Fraction:
    """Σ (c0 + c1·p) for integer p in [lo, hi] (0 when empty)."""
    n = hi - lo + 1
    return Fraction(0) if n <= 0 else n * c0 + c1 * Fraction((lo + hi) * n, 2)


def sum_of_max(f: tuple[Fraction, Fraction], g: tuple[Fraction, Fraction], lo: int, hi: int) -> Fraction:
    """Σ max(f(p), g(p)) over integer p in [lo, hi] for linear f and g, in closed form."""
    d0, d1 = f[0] - g[0], f[1] - g[1]  # f - g: f wins where it is >= 0
    if d1 == 0:
        top = f if d0 >= 0 else g
        return _sum_linear(*top, lo, hi)
    cross = -d0 / d1
    if d1 > 0:  # f wins from the crossing on
        split = max(lo, min(hi + 1, -(-cross.numerator // cross.denominator)))
        return _sum_linear(*g, lo, split - 1) + _sum_linear(*f, split, hi)
    split = max(lo - 1, min(hi, cross.numerator // cross.denominator))
    return _sum_linear(*f, lo, split) + _sum_linear(*g, split + 1, hi)


def plan(network: Network, gpu: Gpu | None, setup: Setup) -> dict[str, Any]:
    """The serving plan as plain data (the JSON of `layercalc serve`): setup, memory, prefill, decode, bounds.

    Without a device, what needs one (the fit, the largest batch, the time bounds) is None.
    """
    _check_setup(network, setup)
    setup, full = _fit_positions(network, setup)
    positions = setup.prompt + setup.generate
    cost = decoder_cost(network)
    for heads in cost.kv_heads:
        if heads % setup.tp:
            raise UsageError(f"--tp {setup.tp} does not divide the {heads} key/value heads of an attention layer")
    base_bits = network.dtype_bytes * 8
    tensors = weight_tensors(full)
    weights = sum(stored_bytes(t, setup, base_bits) * t.copies for t in tensors)
    kv_bits = DTYPE_BITS[setup.kv_dtype]
    kv_token = -(-cost.kv_per_position * kv_bits // 8) // setup.tp  # one sequence, one position, one device
    act_seq = -(-cost.workspace_per_position * setup.prompt * network.dtype_bytes // setup.tp)
    per_seq = kv_token * positions + act_seq
    kv_cache = kv_token * positions * setup.batch
    activations = act_seq * setup.batch
    peak_memory = weights + kv_cache + activations


    def step_read(tokens: int) -> int:
        return sum(read_bytes(t, setup, base_bits, tokens) * copies_read(t, tokens) for t in tensors)

    n, p, g, t = setup.batch, setup.prompt, setup.generate, setup.tp
    prefill_flops = 2 * n * (cost.a * p + cost.b * p * p) / t
    prefill_bytes = step_read(n * p) + n * p * kv_token
    decode_read = step_read(n)
    dflops = (Fraction(2 * n * cost.a, t), Fraction(2 * n, t) * cost.b)  # at context q: c0 + c1·q
    dbytes = (Fraction(decode_read), Fraction(n * kv_token))
    lo, hi = p + 1, p + g
    decode_flops = _sum_linear(*dflops, lo, hi)
    decode_bytes = _sum_linear(*dbytes, lo, hi)
    bounds = _bounds(gpu, network.dtype, prefill_flops, prefill_bytes, dflops, dbytes, (lo, hi), n * setup.gpus // t)
    max_batch = None if gpu is None else max(0, (gpu.memory - weights) // per_seq) if per_seq else 0
    routing = {"routing": ROUTING} if routed(tensors) else {}
    return {
        "name": network.name,
        "gpu": None if gpu is None else gpu.name,
        "setup": {"gpus": setup.gpus, "tp": setup.tp, "weights_dtype": setup.weights_dtype,
                  "kv_dtype": setup.kv_dtype, "batch": n, "prompt": p, "generate": g},
        "memory": {"weights": weights, "kv_cache_per_token": kv_token, "kv_cache": kv_cache,
                   "activations": activations, "peak": peak_memory,
                   "available": None if gpu is None else gpu.memory,
                   "fits": None if gpu is None else peak_memory <= gpu.memory, "max_batch": max_batch},
        "prefill": {"flops": _exact(prefill_flops), "bytes": prefill_bytes},
        "decode": {"flops": _exact(decode_flops), "bytes": _exact(decode_bytes),
                   "flops_first_token": _exact(dflops[0] + dflops[1] * lo),
                   "bytes_first_token": _exact(dbytes[0] + dbytes[1] * lo)},
        "bounds": bounds,
        **routing,
    }


def _bounds(gpu: Gpu | None, dtype: str, prefill_flops: Fraction, prefill_bytes: int,
            dflops: tuple[Fraction, Fraction], dbytes: tuple[Fraction, Fraction], span: tuple[int, int],
            sequences: int) -> dict[str, float | None]:
    """Roofline bounds: time to first token, mean time per output token, and tokens/s over `sequences`."""
    if gpu is None:
        return {"ttft_seconds": None, "tpot_seconds": None, "tokens_per_second": None}
    peak, bandwidth = Fraction(gpu.peak_for(DTYPE_PRECISION[dtype])), Fraction(gpu.bandwidth)
    ttft = max(prefill_flops / peak, prefill_bytes / bandwidth)
    steps = sum_of_max((dflops[0] / peak, dflops[1] / peak), (dbytes[0] / bandwidth, dbytes[1] / bandwidth), *span)
    tpot = steps / (span[1] - span[0] + 1)
    return {"ttft_seconds": float(ttft), "tpot_seconds": float(tpot), "tokens_per_second": float(sequences / tpot)}


def _exact(x: Fraction | int) -> int | float:
    """An exact count as an int (per-device shares that do not divide evenly stay fractional)."""
    x = Fraction(x)
    return x.numerator if x.denominator == 1 else float(x)


def _fit_positions(network: Network, setup: Setup) -> tuple[Setup, Report]:
    """The setup with its prompt settled, and the network analysed at every position a generation uses.

    A prompt left unset (0) is the config's sequence length; when that leaves no room for the
    generated tokens in a model with a fixed number of positions, the prompt shrinks to make room.
    """
    given = setup.prompt > 0
    if not given:
        setup = setup._replace(prompt=network.input[0])
    try:
        return setup, _at(network, setup.prompt + setup.generate)
    except ConfigError as exc:
        if not given and setup.prompt > setup.generate:
            return _fit_positions(network, setup._replace(prompt=setup.prompt - setup.generate))
        raise UsageError(f"--prompt {setup.prompt} + --generate {setup.generate} = "
                         f"{setup.prompt + setup.generate} positions: {exc.message}") from None


def _check_setup(network: Network, setup: Setup) -> None:
    """UsageError for counts a serving setup cannot have."""
    for flag, value in (("--gpus", setup.gpus), ("--tp", setup.tp), ("--batch", setup.batch),
                        ("--prompt", max(setup.prompt, 1)), ("--generate", setup.generate),
                        ("--group-size", setup.group_size)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if setup.gpus % setup.tp:
        raise UsageError(f"--gpus {setup.gpus} is not a multiple of --tp {setup.tp}")
