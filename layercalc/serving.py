"""Serving plans: weights and KV-cache memory, prefill and decode cost, and roofline time bounds.

A decoder's cost per sequence at T positions is exactly c + a·T + b·T² MACs: everything but the
attention core costs the same per token, the core of T queries over T keys costs b·T², and c is
what a request costs once whatever its length (an encoder-decoder's encoder and cross-attention
keys and values; a causal convolution's padded first outputs; 0 for a decoder-only transformer).
So one decode step at context p (the new token attends to p positions, itself included) costs
a + b·p, and a generation's sum over positions is a closed form, not a loop per token. c, a and b
come from the calculator at T = 1, 2 and 3; T = 4 checks that the network really is of that form.
What generation keeps is likewise s + Σ k·min(T, W) elements a sequence: s whatever the length (a
state-space layer's recurrent state, cross-attention's keys and values of the other stream), k a
position of each layer's keys and values, W its sliding window (none: every position). A windowed
layer's share of b·p becomes b_W·min(p, W), linear on each side of W, so the sums stay closed forms.

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
from .conventions import Costing
from .errors import ConfigError, UsageError
from .gpus import DTYPE_PRECISION, Gpu, as_float
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
    convention: str = "layercalc"  # the prefill's count: the full T×T, or "causal" (the pairs the mask keeps)


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


Capped = tuple[tuple[Fraction, "int | None"], ...]  # Σ c·min(p, W) over (c, W); W None: c·p


class DecoderCost(NamedTuple):
    """Per-sequence cost: a + b·p MACs for a token at context p, `once` MACs a request; KV and
    workspace elements per position; `kv_once` elements kept whatever the position (a recurrent
    state, cross-attention's S keys and values)."""

    a: int
    b: Fraction
    kv_per_position: int
    workspace_per_position: int  # the largest layer's input and output together
    kv_heads: tuple[int, ...]
    windowed: Capped = ()  # the part of b·p of layers with a sliding window: b_W·min(p, W) instead
    kv_windows: Capped = ()  # KV elements a position of the cache holds, per window
    once: int = 0
    kv_once: int = 0


def capped_at(terms: Capped, p: int) -> Fraction:
    """Σ c·min(p, W) (c·p where W is None)."""
    return sum((c * (p if w is None else min(p, w)) for c, w in terms), Fraction(0))


Step = tuple[Fraction, Capped]  # c0 + Σ c·min(p, W): a decode step's cost at context p


def _pieces(terms: Capped, lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] cut after each window W inside it: on each piece every min(p, W) is p or W throughout."""
    cuts = sorted({w for _, w in terms if w is not None and lo <= w < hi})
    return list(zip([lo, *[w + 1 for w in cuts]], [*cuts, hi]))


def _linear(step: Step, start: int) -> tuple[Fraction, Fraction]:
    """(c0, c1) with step(p) = c0 + c1·p on a piece starting at `start` (a window W <= start is full: c·W)."""
    c0, terms = step
    full = sum((c * w for c, w in terms if w is not None and w <= start), Fraction(0))
    return c0 + full, sum((c for c, w in terms if w is None or w > start), Fraction(0))


def step_at(step: Step, p: int) -> Fraction:
    """A step's cost at context p."""
    return step[0] + capped_at(step[1], p)


def sum_steps(step: Step, lo: int, hi: int) -> Fraction:
    """Σ step(p) for integer p in [lo, hi], in closed form."""
    return sum((_sum_linear(*_linear(step, a), a, b) for a, b in _pieces(step[1], lo, hi)), Fraction(0))


def sum_max_steps(f: Step, g: Step, lo: int, hi: int) -> Fraction:
    """Σ max(f(p), g(p)) for integer p in [lo, hi], in closed form: linear on the pieces both windows leave."""
    return sum((sum_of_max(_linear(f, a), _linear(g, a), a, b) for a, b in _pieces(f[1] + g[1], lo, hi)),
               Fraction(0))


def _scaled(step: Step, k: Fraction) -> Step:
    """k·step."""
    return step[0] * k, tuple((c * k, w) for c, w in step[1])


def generated(network: Network) -> str | None:
    """The named input a network of streams generates (its output's stream, followed back through
    `from:` to the input it starts from); None for a network of one input."""
    if not network.inputs:
        return None
    nodes, named = network.nodes, dict(network.inputs)
    i = len(nodes) - 1
    while i >= 0:
        source = nodes[i].source
        if source in named:
            return source
        i = next(k for k, n in enumerate(nodes) if n.name == source) if source else i - 1
    return network.main_input


def _stream_shape(network: Network) -> tuple[int, ...]:
    """One sample's shape of the sequence a generation extends."""
    name = generated(network)
    return network.input if name is None else network.streams()[name]


def _at(network: Network, length: int) -> Report:
    """The network analysed for one sequence of `length` positions (of the generated stream)."""
    shape = (length, *_stream_shape(network)[1:])
    name = generated(network)
    at = network._replace(input=shape) if name is None else network.with_input(name, shape)
    return analyse(at._replace(batch=1))


def _fit(reports: list[Report]) -> tuple[int, Fraction] | None:
    """(a, b) with MACs = a·T + b·T², from the reports of one sequence at T = 1, 2 and 3; None if
    the third does not follow from the first two (the cost has another form)."""
    fit = _fit_constant(reports)
    return (fit[1], fit[2]) if fit is not None and fit[0] == 0 else None


def _fit_constant(reports: list[Report]) -> tuple[int, int, Fraction] | None:
    """(c, a, b) with MACs = c + a·T + b·T², from the reports of one sequence at T = 1, 2, 3 (and 4,
    which checks the form; without it c is taken as 0 and T = 3 checks); None for another form."""
    macs = [r.total["macs"] for r in reports]
    if len(macs) < 4:
        macs = [0, *macs]  # T = 0 costs nothing
    else:
        macs = [3 * macs[0] - 3 * macs[1] + macs[2], *macs]  # c = f(0), from f(1), f(2), f(3)
    c = macs[0]
    b = Fraction(macs[2] - 2 * macs[1] + c, 2)
    a = macs[1] - c - b
    if a.denominator != 1 or macs[3] != c + 3 * a + 9 * b or (len(macs) > 4 and macs[4] != c + 4 * a + 16 * b):
        return None
    return c, int(a), b


def length_cost(network: Network) -> tuple[int, Fraction] | None:
    """(a, b) with MACs = a·T + b·T² for one sequence of T positions, or None if the cost has another form.

    Fitted at T = 1 and 2 and checked at T = 3: a network of per-token layers and attention is exact.
    """
    return _fit([_at(network, t) for t in (1, 2, 3)]) if network.input else None


def kv_heads(report: Report) -> list[int]:
    """The key/value heads (a state's channels) of every layer that keeps a KV cache, as often as it runs."""
    return [shape[1] for e, _ in _leaves(report) for shape in e.layer.cache_shapes(e.input_shape).values()]


BEYOND = 2**62  # a length past any window: a cache holding fewer positions at it is capped


def _windows(report: Report) -> tuple[Capped, Capped, int]:
    """From a report at one position: each capped layer's share of b (its core's T² coefficient) with
    its window; every growing cache's KV elements a position with its window (None: uncapped); and
    the elements of the caches that do not grow with the position (a recurrent state, keys and
    values of another stream)."""
    shares: list[tuple[Fraction, int | None]] = []
    kv: dict[int | None, int] = {}
    fixed = 0
    for entry, times in _leaves(report):
        layer, x = entry.layer, entry.input_shape
        one = sum(numel(s) for s in layer.cache_shapes(x).values())
        if not one:
            continue
        if sum(numel(s) for s in layer.cache_shapes((x[0], 2, *x[2:])).values()) == one:
            fixed += one * times
            continue
        held = sum(numel(s) for s in layer.cache_shapes((x[0], BEYOND, *x[2:])).values()) // one
        window = None if held == BEYOND else held
        kv[window] = kv.get(window, 0) + one * times
        if window is not None:  # the layer's own MACs at T = 1 and 2: a·T + b·T²
            m1, m2 = (layer.macs(s, layer.output_shape(s)) for s in ((x[0], 1, *x[2:]), (x[0], 2, *x[2:])))
            shares.append((Fraction(m2 - 2 * m1, 2) * times, window))
    return tuple(shares), tuple((Fraction(c), w) for w, c in kv.items()), fixed


def decoder_cost(network: Network) -> DecoderCost:
    """A decoder's per-token cost and what it keeps; UsageError if the network is not a decoder."""
    if not network.input:
        raise UsageError(f"{network.file}: serve needs a sequence input, got a scalar")
    reports = [_at(network, t) for t in (1, 2, 3, 4)]
    kv = [r.total.get("kv_cache_bytes", 0) // r.dtype_bytes for r in reports]
    if kv[0] == 0:
        raise UsageError(f"{network.file}: serve needs a decoder, a causal attention layer that keeps past keys "
                         "and values; this network has none")
    fit = _fit_constant(reports)
    windowed, kv_windows, fixed = _windows(reports[0])
    if fit is None or any(kv[t - 1] != fixed + capped_at(kv_windows, t) for t in (1, 2, 3, 4)):
        raise UsageError(f"{network.file}: serve needs a decoder whose cost is per token plus attention over past "
                         "tokens; this network's cost grows otherwise with the sequence")
    workspace = max(numel(e.input_shape) + numel(e.output_shape) for e, _ in _leaves(reports[0]))
    return DecoderCost(fit[1], fit[2], kv[1] - kv[0], workspace, tuple(kv_heads(reports[0])), windowed, kv_windows,
                       fit[0], fixed)


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
    # one sequence's cache bytes on one device at p positions: each window's layers hold min(p, W);
    # cross-attention's keys and values of the other stream are held whatever the position
    kv_seq: Capped = tuple((Fraction(-(-int(c) * kv_bits // 8) // setup.tp), w) for c, w in cost.kv_windows)
    kv_once = -(-cost.kv_once * kv_bits // 8) // setup.tp
    workspace = cost.workspace_per_position * setup.prompt
    if network.inputs:  # the encoder's layers do not grow with the prompt: the largest layer, as analysed
        workspace = max(numel(e.input_shape) + numel(e.output_shape) for e, _ in _leaves(full))
    act_seq = -(-workspace * network.dtype_bytes // setup.tp)
    per_seq = int(capped_at(kv_seq, positions)) + kv_once + act_seq
    kv_cache = (int(capped_at(kv_seq, positions)) + kv_once) * setup.batch
    activations = act_seq * setup.batch
    peak_memory = weights + kv_cache + activations


    def step_read(tokens: int) -> int:
        return sum(read_bytes(t, setup, base_bits, tokens) * copies_read(t, tokens) for t in tensors)

    n, p, g, t = setup.batch, setup.prompt, setup.generate, setup.tp
    # an encoder-decoder's encoder and cross-attention keys and values run once, at prefill; every
    # decode step reads that fixed cache besides the keys and values of the positions so far
    prefill_flops = 2 * n * prefill_macs(network, cost, p, setup.convention) / t
    prefill_bytes = step_read(n * p) + n * (int(capped_at(kv_seq, p)) + kv_once)
    decode_read = step_read(n)
    # at context q: the attention over min(q, W) keys in a windowed layer, q in the others
    scale = Fraction(2 * n, t)
    full_b = cost.b - sum((c for c, _ in cost.windowed), Fraction(0))
    dflops: Step = (scale * cost.a, ((scale * full_b, None), *((scale * c, w) for c, w in cost.windowed)))
    dbytes: Step = (Fraction(decode_read + n * kv_once), tuple((n * c, w) for c, w in kv_seq))
    lo, hi = p + 1, p + g
    decode_flops = sum_steps(dflops, lo, hi)
    decode_bytes = sum_steps(dbytes, lo, hi)
    bounds = _bounds(gpu, network.dtype, prefill_flops, prefill_bytes, dflops, dbytes, (lo, hi), n * setup.gpus // t)
    max_batch = None if gpu is None else max(0, (gpu.memory - weights) // per_seq) if per_seq else 0
    memory = {"weights": weights, "kv_cache_per_token": kv_token, "kv_cache": kv_cache}
    if kv_once:  # kept whatever the length (a recurrent state, another stream's keys and values): in kv_cache
        memory["state_per_sequence"] = kv_once
    routing = {"routing": ROUTING} if routed(tensors) else {}
    return {
        "name": network.name,
        "gpu": None if gpu is None else gpu.name,
        "setup": {"gpus": setup.gpus, "tp": setup.tp, "weights_dtype": setup.weights_dtype,
                  "kv_dtype": setup.kv_dtype, "batch": n, "prompt": p, "generate": g},
        "memory": {**memory, "activations": activations, "peak": peak_memory,
                   "available": None if gpu is None else gpu.memory,
                   "fits": None if gpu is None else peak_memory <= gpu.memory, "max_batch": max_batch},
        "prefill": {"flops": _exact(prefill_flops), "bytes": prefill_bytes},
        "decode": {"flops": _exact(decode_flops), "bytes": _exact(decode_bytes),
                   "flops_first_token": _exact(step_at(dflops, lo)),
                   "bytes_first_token": _exact(step_at(dbytes, lo))},
        "bounds": bounds,
        **routing,
    }


def prefill_macs(network: Network, cost: DecoderCost, prompt: int, convention: str) -> Fraction:
    """One sequence's prefill MACs: a·P + b·P² (the full P×P), or under "causal" the network counted
    with the pairs each mask keeps."""
    if convention == "causal":
        return Fraction(Costing(_at(network, prompt), "causal").total())
    return cost.once + cost.a * prompt + cost.b * prompt * prompt


def _bounds(gpu: Gpu | None, dtype: str, prefill_flops: Fraction, prefill_bytes: int,
            dflops: Step, dbytes: Step, span: tuple[int, int], sequences: int) -> dict[str, float | None]:
    """Roofline bounds: time to first token, mean time per output token, and tokens/s over `sequences`."""
    if gpu is None:
        return {"ttft_seconds": None, "tpot_seconds": None, "tokens_per_second": None}
    peak, bandwidth = Fraction(gpu.peak_for(DTYPE_PRECISION[dtype])), Fraction(gpu.bandwidth)
    ttft = max(prefill_flops / peak, prefill_bytes / bandwidth)
    steps = sum_max_steps(_scaled(dflops, 1 / peak), _scaled(dbytes, 1 / bandwidth), *span)
    tpot = steps / (span[1] - span[0] + 1)
    return {"ttft_seconds": as_float(ttft, "the time to first token"), "tpot_seconds": as_float(tpot, "the time per output token"),
            "tokens_per_second": as_float(sequences / tpot, "the tokens per second")}


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
        setup = setup._replace(prompt=_stream_shape(network)[0])
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
