"""Training plans: compute per step, memory per device and time, for a layout of devices.

Compute is exact: the calculator's forward and backward count of the config (frozen layers get no
weight gradient), plus the forward again of what is recomputed. Beside it, 6·N·D and, for a
GPT-style decoder, Megatron-LM's closed form.

Memory per device, as the ZeRO paper and Megatron-LM lay it out:
- model states: weights, gradients, optimizer states and fp32 master weights by precision recipe;
  tensor (t) and pipeline (p) parallelism spread them over t·p devices, ZeRO stage 1 shards the
  optimizer states and master weights over the data-parallel group, stage 2 the gradients too,
  stage 3 the weights too;
- activations: what autograd keeps, layer by layer (each layer's rule, see `Layer.saved_for_backward`),
  a product's factors (a gated MLP's), and a tensor several branches keep (a block's input) once.
  Under tensor parallelism a tensor as wide as the model (the residual stream) is replicated and
  every other one (attention's heads, a feed-forward's hidden width) split; sequence parallelism
  splits the replicated ones too. Selective recompute and FlashAttention keep no T×T matrix; full
  recompute keeps only each repeated block's input. A pipeline stage holds its share of the
  repeated blocks for as many micro-batches as are in flight (min(p, m) in 1F1B);
  what sits outside the repeated blocks (embedding, head) is counted on every stage, an overestimate.
- buffers (rotary tables, norms' running statistics) in the weights' dtype.

Time is an estimate at a model FLOPs utilisation (MFU): step time = FLOPs ÷ (devices · peak · MFU),
times (1 + (p − 1)/m) for the pipeline's bubble; or, given measured GPU-hours or tokens/s, the MFU
they imply.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Iterator, NamedTuple

from .analysis import Entry, Execution, Report, analyse
from .config import Network
from .conventions import OPTIMIZER_STATES
from .conventions import training as training_cost
from .errors import UsageError
from .gpus import Gpu, as_float
from .layers import Saved, numel
from .serving import kv_heads

RECOMPUTE = ("none", "selective", "full")


class Recipe(NamedTuple):
    """Bytes per parameter of each model state, and the precision matmuls run in."""

    weight: int
    gradient: int
    master: int  # an fp32 copy of the weights the optimizer updates (mixed precision)
    state: int  # each optimizer state tensor (Adam's two moments)
    precision: str


RECIPES = {
    "fp32": Recipe(4, 4, 0, 4, "fp32"),
    "bf16": Recipe(2, 2, 0, 2, "bf16"),
    "fp16-mixed": Recipe(2, 2, 4, 4, "fp16"),
    "bf16-mixed": Recipe(2, 2, 4, 4, "bf16"),
    "fp8-mixed": Recipe(2, 2, 4, 4, "fp8"),  # bf16 weights; fp8 only inside the matmuls
}


class Layout(NamedTuple):
    """How a step is spread: devices, parallel degrees, batches, recompute and the numeric recipe."""

    gpus: int
    tp: int
    pp: int
    zero: int
    sp: bool
    micro_batch: int
    global_batch: int
    recompute: str
    flash: bool
    precision: str
    optimizer: str

    @property
    def dp(self) -> int:
        """The data-parallel degree: devices over t·p."""
        return self.gpus // (self.tp * self.pp)

    @property
    def micro_batches(self) -> int:
        """Micro-batches each data-parallel replica runs a step."""
        return self.global_batch // (self.micro_batch * self.dp)


def check_layout(layout: Layout) -> None:
    """UsageError for a layout that cannot exist."""
    for flag, value in (("--gpus", layout.gpus), ("--tp", layout.tp), ("--pp", layout.pp),
                        ("--micro-batch", layout.micro_batch), ("--global-batch", layout.global_batch)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if layout.gpus % (layout.tp * layout.pp):
        raise UsageError(f"--gpus {layout.gpus} is not a multiple of --tp {layout.tp} × --pp {layout.pp}")
    if layout.global_batch % (layout.micro_batch * layout.dp):
        raise UsageError(f"--global-batch {layout.global_batch} is not a multiple of --micro-batch "
                         f"{layout.micro_batch} × {layout.dp} data-parallel replicas")
    if layout.zero not in (0, 1, 2, 3):
        raise UsageError(f"--zero must be 0, 1, 2 or 3, got {layout.zero}")
    if layout.zero and layout.dp == 1:
        raise UsageError(f"--zero {layout.zero} shards over data-parallel replicas, and this layout has one")
    if layout.recompute not in RECOMPUTE:
        raise UsageError(f"--recompute must be one of {', '.join(RECOMPUTE)}, got {layout.recompute!r}")
    if layout.precision not in RECIPES:
        raise UsageError(f"--precision must be one of {', '.join(RECIPES)}, got {layout.precision!r}")
    if layout.optimizer not in OPTIMIZER_STATES:
        raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZER_STATES)}, got {layout.optimizer!r}")


def stacks(report: Report) -> list[Execution]:
    """The rows of the outermost repeats, at any depth (a decoder's layers, or an encoder's and a
    decoder's blocks inside their stacks): the repeated blocks."""
    found: list[Execution] = []
    for x in report.executions():
        if x.entry.copies > 0 and not (found and x.at <= found[-1].at + found[-1].size):
            found.append(x)
    return found


def repeated_blocks(report: Report) -> int:
    """Copies of the repeated blocks: what a pipeline splits into stages."""
    return sum(x.copies * x.entry.copies for x in stacks(report))


def _check_split(report: Report, layout: Layout) -> None:
    """UsageError when t does not divide every attention's heads, or p exceeds the repeated blocks."""
    for heads in kv_heads(report):
        if heads % layout.tp:
            raise UsageError(f"--tp {layout.tp} does not divide the {heads} key/value heads of an attention layer")
    blocks = repeated_blocks(report)
    if layout.pp > 1 and layout.pp > blocks:
        raise UsageError(f"--pp {layout.pp} exceeds the {blocks} repeated blocks a pipeline splits")


def model_states(params: int, trainable: int, recipe: Recipe, optimizer: str, zero: int, dp: int,
                 shards: int) -> dict[str, int]:
    """Bytes per device of weights, gradients, optimizer states and master weights.

    Frozen parameters hold weights only. shards = t·p; ZeRO stages shard over the dp replicas.
    """
    def share(total: int, stage: int) -> int:
        per = -(-total // shards)
        return -(-per // dp) if zero >= stage else per

    states = OPTIMIZER_STATES[optimizer] * recipe.state
    return {
        "weights": share(params * recipe.weight, 3),
        "gradients": share(trainable * recipe.gradient, 2),
        "optimizer_states": share(trainable * states, 1),
        "master_weights": share(trainable * recipe.master, 1),
    }


def _recorded(report: Report, leaf: bool | None = True) -> Iterator[Execution]:
    """Every run that autograd records (its input needs a gradient, or it trains): leaves by default."""
    for x in report.executions(leaf=leaf):
        if x.grad or x.entry.trainable_params > 0:
            yield x


def model_width(report: Report) -> int | None:
    """The width of the residual stream: the last dim of the first repeated block's input."""
    for x in stacks(report):
        if x.input_shape:
            return x.input_shape[-1]
    return None


class Kept4(NamedTuple):
    """Bytes kept for backward, before any split: in the repeated blocks or outside them, each as
    wide as the model (replicated under tensor parallelism without sequence parallelism) or not."""

    stack_wide: int
    stack_split: int
    outside_wide: int
    outside_split: int


Key = tuple[Any, ...]  # a tensor of one run of the network: rows that keep one key keep one tensor


class Tensors(NamedTuple):
    """Which tensor each row of the run table reads and writes (by row index), and what a block's
    sequences end in (by the block's row index, then the sequence's name)."""

    reads: dict[int, Key]
    writes: dict[int, Key]
    ends: dict[int, dict[str, Key]]
    same: dict[Key, Key]  # a sequential group's or a repeat's output is its last entry's

    def find(self, key: Key) -> Key:
        while key in self.same:
            key = self.same[key]
        return key


def tensors(report: Report) -> Tensors:
    """The tensors of the run table: each layer's output is new, and the next entry of its sequence
    reads it (the first reads the block's input, a top-level entry with `from:` what it names); a
    sequential group or a repeat passes its last entry's output on, a residual, concat or product
    makes a new one; an expert reads its routed copy of the tokens."""
    t = Tensors({}, {}, {}, {})
    above: list[Execution] = []
    top: dict[str, Key] = {}
    previous: Key = ("input",)

    def close(b: Execution) -> None:
        ends = t.ends[b.at]
        if b.entry.layer is None or not b.entry.layer.creates_tensor:  # a group; a template's instance too
            t.same[t.writes[b.at]] = next(reversed(ends.values()), t.reads[b.at])

    for x in report.run_table:
        while above and x.at > above[-1].at + above[-1].size:
            close(above.pop())
        seq = x.entry.seg.rpartition(".")[0]
        if not above:
            source = x.entry.source
            t.reads[x.at] = previous if source is None else top.get(source, ("input", source))
        elif x.held != above[-1].held or x.copies != above[-1].copies:
            t.reads[x.at] = ("routed", x.at)
        else:
            t.reads[x.at] = t.ends[above[-1].at].get(seq, t.reads[above[-1].at])
        t.writes[x.at] = ("out", x.at)
        if above:
            t.ends[above[-1].at][seq] = t.writes[x.at]
        else:
            previous = top[x.entry.name] = t.writes[x.at]
        if x.entry.sequences:
            above.append(x)
            t.ends[x.at] = {}
    while above:
        close(above.pop())
    return t


def _kept(report: Report, flash: bool) -> Iterator[tuple[Execution, Saved, Key | None]]:
    """Every tensor a run keeps for backward, with its key when it is the run's input or output
    (None: one of its own): each layer's, and each product's factors (its branches' outputs)."""
    t = tensors(report)
    for x in _recorded(report, leaf=None):
        e = x.entry
        if x.leaf:
            if e.layer.input_for_weights and not e.trainable and e.trainable_params == 0:
                continue  # frozen: its dL/dx needs the weight alone
            for s in e.layer.saved_for_backward(e.input_shape, e.output_shape, flash):
                key = {"x": t.reads[x.at], "y": t.writes[x.at]}.get(s.tensor)
                yield x, s, None if key is None else t.find(key)
        elif e.layer is not None and e.layer.keeps_outputs:  # (a template's instance has no layer)
            for (name, _), seq in zip(e.layer.sequences(), e.sequences):
                out = seq[-1].output_shape if seq else e.input_shape
                yield x, Saved(numel(out), out[-1]), t.find(t.ends[x.at].get(name, t.reads[x.at]))


def kept_bytes(report: Report, recompute: str, flash: bool, act_bytes: int) -> Kept4:
    """What autograd keeps for one micro-batch, by where it sits and how tensor parallelism treats
    it; a tensor several runs keep (a layer's input, its neighbour's output) is stored once."""
    width = model_width(report)
    flash = flash or recompute == "selective"
    spans = [(x.at, x.at + x.size) for x in stacks(report)]
    parts = [0, 0, 0, 0]
    stored: set[tuple[Key, int]] = set()
    for x, s, key in _kept(report, flash):
        in_stack = any(start < x.at <= end for start, end in spans)
        if recompute == "full" and in_stack:
            continue
        if key is not None:  # once per tensor (rows folding different numbers of runs: apart)
            if (key, x.copies) in stored:
                continue
            stored.add((key, x.copies))
        where = (0 if in_stack else 2) + (0 if s.width == width else 1)
        parts[where] += x.copies * s.elements * (1 if s.mask else act_bytes)
    if recompute == "full":  # each repeated block keeps its input, recomputes the rest
        parts[0] = sum(x.copies * x.entry.copies * numel(x.input_shape) * act_bytes for x in stacks(report))
    return Kept4(*parts)


def activation_bytes(report: Report, layout: Layout, act_bytes: int, kept: Kept4 | None = None) -> int:
    """Bytes of what autograd keeps on one device for the micro-batches in flight."""
    k = kept or kept_bytes(report, layout.recompute, layout.flash, act_bytes)
    t = layout.tp
    wide = Fraction(1, t) if layout.sp else Fraction(1)
    stack = k.stack_wide * wide + Fraction(k.stack_split, t)
    outside = k.outside_wide * wide + Fraction(k.outside_split, t)
    in_flight = min(layout.pp, layout.micro_batches)
    return int(-(-(stack * in_flight / layout.pp + outside) // 1))


def recompute_macs(report: Report, recompute: str) -> int:
    """MACs of the forward run again for one micro-batch: the repeated blocks (full), attention's T×T part (selective)."""
    if recompute == "full":
        return sum(x.copies * x.entry.macs for x in stacks(report))
    if recompute == "selective":
        return report.fold(lambda x: x.entry.layer.core_macs(x.input_shape))
    return 0


def _cache_grows(entry: Entry) -> bool:
    """Whether a layer's generation cache grows with the sequence (keys and values of every position)."""
    x = entry.input_shape
    kept = lambda shape: sum(numel(s) for s in entry.layer.cache_shapes(shape).values())  # noqa: E731
    return kept((x[0], x[1] + 1, *x[2:])) > kept(x)


def tokens_per_sample(report: Report) -> int:
    """The tokens a sample trains on: the length of the first input read as token ids (an
    encoder-decoder's target text when it encodes audio or images first), else 1 (the sample)."""
    if report.tokens:
        return report.network.input[0]
    return next((shape[0] for name, shape in report.network.streams().items() if report.ids.get(name)), 1)


def six_nd_params(report: Report) -> int:
    """N of 6·N·D: the params a token passes through (a mixture of experts' active params, as MoE
    papers count them), every param otherwise."""
    total = report.total
    return total.get("active_params", total["params"])


def megatron_flops(report: Report, layout: Layout) -> int | None:
    """Megatron-LM's training FLOPs a step, 72·B·s·l·h²·(1 + s/6h + V/12lh) (96 and V/16lh with full
    recompute), for a decoder reading token ids with causal attention; None for anything else."""
    width = model_width(report)
    first = next((x.entry for x in _recorded(report)), None)
    vocab = first.layer.input_ids() if first is not None else None
    caching = [x for x in _recorded(report) if x.entry.layer.cache_shapes(x.entry.input_shape)]
    layers = sum(x.copies for x in caching)
    # the formula is a GPT's: every layer that keeps a cache keeps keys and values, growing with the
    # positions (a recurrent state of fixed size is another kind of layer)
    if not (report.tokens and width and vocab and layers) or report.network.inputs or report.routed \
            or not all(_cache_grows(x.entry) for x in caching):  # a GPT's dense MLP and cache
        return None
    b, s, h, ell = layout.global_batch, report.network.input[0], width, layers
    if layout.recompute == "full":
        return 96 * b * s * ell * h * h + 16 * b * s * s * ell * h + 6 * b * s * h * vocab
    return 72 * b * s * ell * h * h + 12 * b * s * s * ell * h + 6 * b * s * h * vocab


class Pace(NamedTuple):
    """What sets the time: an MFU, or a measurement to infer it from (GPU-hours for D tokens, or tokens/s)."""

    mfu: float | None = None
    gpu_hours: float | None = None
    tokens_per_second: float | None = None


def _compute(network: Network, layout: Layout) -> tuple[Report, dict[str, Any]]:
    """The micro-batch's report, and the step's FLOPs: with recompute, model FLOPs (without), per token."""
    report = analyse(network._replace(batch=layout.micro_batch))
    steps = layout.global_batch // layout.micro_batch  # micro-batches a step, over every replica
    model = training_cost(report)["training_flops"] * steps
    hardware = model + 2 * recompute_macs(report, layout.recompute) * steps
    tokens = layout.global_batch * tokens_per_sample(report)
    params = six_nd_params(report)
    return report, {
        "flops_per_step": hardware,
        "model_flops_per_step": model,
        "flops_per_token": Fraction(model, tokens),
        "flops_6nd_per_token": 6 * params,
        "flops_megatron_per_step": megatron_flops(report, layout),
        "tokens_per_step": tokens,
    }


def _memory(report: Report, layout: Layout, gpu: Gpu | None, kept: Kept4 | None = None) -> dict[str, Any]:
    """Bytes per device, part by part, with the peak and whether it fits."""
    recipe = RECIPES[layout.precision]
    total = report.total
    parts = model_states(total["params"], total["trainable_params"], recipe, layout.optimizer, layout.zero,
                         layout.dp, layout.tp * layout.pp)
    parts["activations"] = activation_bytes(report, layout, recipe.weight, kept)
    parts["buffers"] = total["buffers"] * recipe.weight
    peak = sum(parts.values())
    available = None if gpu is None else gpu.memory
    return {**parts, "peak": peak, "available": available, "fits": None if gpu is None else peak <= gpu.memory}


def _time(compute: dict[str, Any], layout: Layout, gpu: Gpu | None, pace: Pace, tokens: int | None,
          params: int) -> dict[str, float | None]:
    """Step time, throughput and totals at an MFU, or the MFU a measurement implies (model FLOPs ÷ peak)."""
    nothing = dict.fromkeys(("mfu", "mfu_6nd", "step_seconds", "tokens_per_second", "total_seconds", "gpu_hours"))
    if gpu is None:
        return nothing
    peak = Fraction(gpu.peak_for(RECIPES[layout.precision].precision)) * layout.gpus
    per_token = compute["flops_per_token"]
    if pace.gpu_hours is not None and tokens is not None:
        rate = Fraction(tokens) / (Fraction(pace.gpu_hours) * 3600 / layout.gpus)  # tokens/s of the whole run
    elif pace.tokens_per_second is not None:
        rate = Fraction(pace.tokens_per_second)
    else:
        rate = Fraction(pace.mfu if pace.mfu is not None else 0.4) * peak / per_token
    mfu = per_token * rate / peak
    step = compute["tokens_per_step"] / rate
    total = None if tokens is None else tokens / rate
    return {
        "mfu": as_float(mfu, "the MFU"), "mfu_6nd": as_float(6 * params * rate / peak, "the MFU by 6ND"),
        "step_seconds": as_float(step, "the step time"), "tokens_per_second": as_float(rate, "the tokens per second"),
        "total_seconds": None if total is None else as_float(total, "the run's time"),
        "gpu_hours": None if total is None else as_float(total * layout.gpus / 3600, "the GPU-hours"),
    }


def plan(network: Network, gpu: Gpu | None, layout: Layout, pace: Pace = Pace(),
         tokens: int | None = None) -> dict[str, Any]:
    """The training plan as plain data (the JSON of `layercalc train`): layout, compute, memory, time."""
    check_layout(layout)
    for flag, value in (("--mfu", pace.mfu), ("--gpu-hours", pace.gpu_hours),
                        ("--tokens-per-second", pace.tokens_per_second), ("--tokens", tokens)):
        if value is not None and not (0 < value < float("inf")) or (flag == "--mfu" and value and value > 1):
            raise UsageError(f"{flag} must be a positive number{' at most 1' if flag == '--mfu' else ''}, got {value}")
    if pace.gpu_hours is not None and tokens is None:
        raise UsageError("--gpu-hours needs --tokens: the MFU is the tokens' FLOPs over the hours' peak")
    if gpu is None and (pace.gpu_hours is not None or pace.tokens_per_second is not None):
        raise UsageError("an MFU from measurements needs --gpu: it is a share of the device's peak")
    report, compute = _compute(network, layout)
    _check_split(report, layout)
    params = six_nd_params(report)
    return {
        "name": network.name,
        "gpu": None if gpu is None else gpu.name,
        "layout": {**layout._asdict(), "dp": layout.dp},
        "compute": {k: (float(v) if isinstance(v, Fraction) else v) for k, v in compute.items()},
        "memory": _memory(report, layout, gpu),
        "time": _time(compute, layout, gpu, pace, tokens, params),
    }


def _divisors(n: int) -> list[int]:
    """The divisors of n, ascending: each d up to √n and n // d, so 2^40 devices take 2^20 steps, not 2^40."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def layouts(base: Layout, heads: list[int], blocks: int) -> Iterator[Layout]:
    """Every layout of the base's devices and global batch: t dividing the heads, p at most the
    repeated blocks, a micro-batch dividing each replica's share, ZeRO only with replicas to shard over."""
    for t in _divisors(base.gpus):
        if any(h % t for h in heads):
            continue
        for p in _divisors(base.gpus // t):
            dp = base.gpus // (t * p)
            if base.global_batch % dp or (p > 1 and p > blocks):
                continue
            for b in _divisors(base.global_batch // dp):
                for zero in range(4) if dp > 1 else (0,):
                    for recompute in RECOMPUTE:
                        for sp in (False, True) if t > 1 else (False,):
                            yield base._replace(tp=t, pp=p, zero=zero, micro_batch=b, recompute=recompute, sp=sp)


def search(network: Network, gpu: Gpu, base: Layout, pace: Pace = Pace()) -> list[dict[str, Any]]:
    """Every layout of the base's devices and global batch that fits, fastest first (an estimate).

    A layout's step time is its FLOPs with recompute at the MFU, times (1 + (p − 1)/m) for the
    pipeline's bubble; t only where it divides every attention's key/value heads.
    """
    mfu = Fraction(pace.mfu if pace.mfu is not None else 0.4)
    peak = Fraction(gpu.peak_for(RECIPES[base.precision].precision)) * base.gpus
    shape = analyse(network._replace(batch=1))
    found: list[dict[str, Any]] = []
    cache: dict[tuple[int, str], tuple[Report, dict[str, Any], Kept4]] = {}  # these depend on b and recompute only
    for layout in layouts(base, kv_heads(shape), repeated_blocks(shape)):
        key = (layout.micro_batch, layout.recompute)
        if key not in cache:
            report, compute = _compute(network, layout)
            act = RECIPES[layout.precision].weight
            cache[key] = (report, compute, kept_bytes(report, layout.recompute, layout.flash, act))
        found += _candidate(*cache[key], gpu, layout, peak, mfu)
    # equal times (communication is not modelled) go to the simpler layout: less model parallelism,
    # a lower ZeRO stage, less recompute, larger micro-batches
    def simpler(c: dict[str, Any]) -> tuple[Any, ...]:
        lay = c["layout"]
        return (c["step_seconds"], lay["tp"] * lay["pp"], lay["zero"], RECOMPUTE.index(lay["recompute"]),
                lay["sp"], -lay["micro_batch"], c["memory"]["peak"])

    return sorted(found, key=simpler)


def _candidate(report: Report, compute: dict[str, Any], kept: Kept4, gpu: Gpu, layout: Layout, peak: Fraction,
               mfu: Fraction) -> list[dict[str, Any]]:
    """[the layout with its step time and memory] if it fits on the device, else []."""
    memory = _memory(report, layout, gpu, kept)
    if not memory["fits"]:
        return []
    bubble = 1 + Fraction(layout.pp - 1, layout.micro_batches)
    step = compute["flops_per_step"] / (peak * mfu) * bubble
    return [{"layout": {**layout._asdict(), "dp": layout.dp}, "step_seconds": float(step),
             "tokens_per_second": float(compute["tokens_per_step"] / step), "memory": memory}]
