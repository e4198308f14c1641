"""Planning a verify run: the checks to run, in order, as a list of Task records, and the
checks skipped, with why. The plan is a value, built in steps that are each a pure function:

- wanted: every check the run wants, place by place as the calculator lists them (children
  first), each layer's batch-2 copy right after it when the input's batch is 1;
- grouped: identical checks (type, arguments, input shape, children) in one group; its first
  place runs the check, the others report its outcome;
- one function per kind of task turns a group into a Task or a skip: a pass over the network or
  one of its largest blocks that fit the memory budget (pass_task), a check made inside such a
  pass (inner_task), a layer or block checked on its own, made to fit the budget and a bounded
  number of Python steps (own_task);
- ordered: the passes (each with the tasks checked inside it), then everything checked on its own.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, NamedTuple

from ..analysis import Entry, Report, entry_table, fold
from ..errors import ConfigError, MemoryBudgetError, UsageError
from ..layers import numel
from .checks import ELEMENTWISE_MAX, ELEMENTWISE_WORK
from .memory import check_memory, largest_leaf_activations, mb
from .reduce import Fits, shape_text, shorter_input, smaller_copy
from .report import Options, Skipped
from .resources import Budget, run_budget

NETWORK = "(network)"

Place = tuple[str, str, int]  # (path, name, identical copies it stands for) of a place reporting a check


@dataclass(frozen=True, eq=False)
class Task:
    """One check to run: an entry at a path (or a batch-2 copy of a leaf), and the other places
    with the same type, arguments and input shape, which report its outcome; a place may stand
    for many identical copies of a repeat (its path a range, 'blocks.1-999', as the calculator's
    folded row)."""

    entry: Entry
    path: str
    name: str
    batch2: bool = False
    need: int = 0  # bytes it holds at its peak, estimated (0 inside a pass, which holds it)
    copies: int = 1  # identical copies its own place stands for
    places: tuple[Place, ...] = ()
    inner: dict[str, Task] = field(default_factory=dict)  # a pass's: what it checks from its forward and backward, by path
    reduced: str = ""  # how the check was made to fit the memory budget (a shorter input, a smaller copy)

    @property
    def is_network(self) -> bool:
        """True for the whole network's end-to-end check."""
        return self.path == ""

    @property
    def label(self) -> str:
        """What the progress display and the skip notes call it."""
        return (self.path or NETWORK) + (" @ batch 2" if self.batch2 else "")


class Want(NamedTuple):
    """A check the run wants at one place: its entry (a batch-2 copy when batch2), the place, and
    how many identical copies the place stands for."""

    entry: Entry
    path: str
    name: str
    times: int
    batch2: bool


class Dropped(NamedTuple):
    """A check not run, and the bytes it needed when the memory budget is why (else 0)."""

    skipped: Skipped
    need: int = 0


class Planned(NamedTuple):
    """A task and the path of the pass that makes it (a pass's own path; None: it runs on its own)."""

    task: Task
    within: str | None


def signature(entry: Entry, memo: dict[int, Any]) -> Any:
    """What makes two entries the same check: type, arguments, input shape and, for blocks, their children's."""
    key = id(entry)
    if key not in memo:
        kids = tuple(signature(c, memo) for c in entry.children)
        args = repr(sorted(entry.layer.arguments().items())) if entry.layer is not None else ""
        # the entry is kept with its signature: a dropped entry's id is reused by the next one made
        memo[key] = (entry, (entry.type, args, tuple(entry.input_shape), entry.copies, kids))
    return memo[key][1]


def places(report: Report) -> list[tuple[Entry, str, str, int]]:
    """(entry, path, name, identical copies it stands for) of every leaf and block, children first,
    as the calculator lists them: a repeat of more than LISTED_COPIES copies lists its distinct
    copies, then one place for the identical rest ('blocks.2-999', 998 copies)."""
    post_order = sorted(report.run_table, key=lambda x: (x.at + x.size, -x.depth))
    return [(x.entry, x.path, x.name, x.copies) for x in post_order]


def network_entry(report: Report) -> Entry:
    """The whole network as one entry (a block of the top-level entries)."""
    total = report.total
    entry = Entry(seg="", name=report.network.name, type="network", input_shape=report.network.input_shape,
                  output_shape=report.output_shape, params=total["params"], children=list(report.entries))
    entry.tensors = sum(e.tensors for e in report.entries)
    entry.ids = report.entries[0].ids if report.entries else None
    return entry


BATCH2_SIZE = 4  # the batch-2 copy's other dimensions are cut to this where the layer allows it


def batch2_entry(e: Entry) -> Entry:
    """The same layer at batch 2, on a smaller input where that is the same layer: each dimension
    after the batch is cut to BATCH2_SIZE when the layer still accepts the input and its parameter
    shapes do not change (a conv's height and width, not its channels; a linear's leading
    dimensions, not its features). A batch-dimension bug shows at any size. Raises ConfigError
    when the layer refuses batch 2 itself."""
    layer = e.layer
    shape = [2, *e.input_shape[1:]]
    params = layer.param_shapes(tuple(shape))
    layer.output_shape(tuple(shape))
    for d in range(1, len(shape)):
        if shape[d] <= BATCH2_SIZE:
            continue
        trial = [*shape[:d], BATCH2_SIZE, *shape[d + 1:]]
        try:
            if layer.param_shapes(tuple(trial)) == params:
                layer.output_shape(tuple(trial))
                shape = trial
        except ConfigError:
            continue  # this dimension stays whole
    x = tuple(shape)
    y = layer.output_shape(x)
    count = sum(numel(s) for name, s in params.items() if name not in layer.shared_params())
    copy = Entry(seg=e.seg, name=e.name, type=e.type, input_shape=x, output_shape=y, params=count,
                 tensors=numel(y), layer=layer, ids=e.ids)
    copy.reads = {name: (2, *shape[1:]) for name, shape in e.reads.items()}  # the other streams at batch 2 too
    return copy


def selection(report: Report, opts: Options) -> tuple[int, int]:
    """(how many layers and blocks --only selects, how many there are); all without --only. Raises UsageError for an
    --only that names nothing (with the closest names and paths) and for an --impl of a type the
    network does not use."""
    names: set[str] = set()
    types: set[str] = set()
    count = total = 0
    for entry, path, name, _ in places(report):
        names.update((name, path))
        types.add(entry.type)
        count += _selected(path, name, opts.only)
        total += 1
    impl = getattr(opts.impl, "type_name", None)
    if impl is not None and impl not in types:
        raise UsageError(f"--impl: the network has no {impl} layer, so nothing would run your {opts.impl.__name__} "
                         f"(its layer types: {', '.join(sorted(types))})")
    for o in opts.only:
        if o in names or any(n.startswith(o + ".") for n in names):
            continue
        close = difflib.get_close_matches(o, sorted(names), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "`layercalc summary CONFIG` lists every name and path"
        raise UsageError(f"--only {o}: no layer or block has that name or path; {hint}")
    return count, total


def _selected(path: str, name: str, only: tuple[str, ...]) -> bool:
    return not only or any(name == o or path == o or path.startswith(o + ".") for o in only)


def pass_need(entry: Entry) -> int:
    """Bytes of a check run as one pass over a subtree (the network, or a block): the subtree's
    own need, plus each checked layer's and block's dL/dy and dL/dx kept until its turn, plus the
    largest layer checked again inside it (its forward's arrays while the pass holds its own)."""
    return check_memory(entry) + 16 * (numel(entry.input_shape) + entry.tensors) + largest_leaf_activations(entry)


def _largest_blocks(report: Report, limit: int) -> Iterator[tuple[str, Entry]]:
    """(path, entry) of the largest blocks that fit the budget (each checked as one pass, like the
    network): a block that fits stands for everything below it; a repeat group is never one pass,
    its copies are (the identical rest of a long one as one place)."""
    skip = -1  # rows before this index lie inside a block already chosen
    for x in report.run_table:
        if x.at < skip or not x.entry.children or x.entry.copies:
            continue
        if pass_need(x.entry) <= limit:
            yield x.path, x.entry
            skip = x.at + x.size + 1


MAX_MACS = 10**10  # a check whose forward takes more runs on a shorter input (minutes otherwise)
# Python steps a check may run in all (its numeric forwards times each forward's Layer.python_steps):
# array work does not show them (a 10-layer LSTM on 4 steps, checked element by element: 77,000
# steps, most of its run)
MAX_STEPS = 10**5
FORWARDS_PER_DIRECTION = 4  # numeric forwards of a direction, about: a difference and its confirmation


def python_steps(entry: Entry) -> int:
    """Python steps one forward of the subtree takes: every layer's Layer.python_steps, as often as it runs.

    A block with no children at all (an empty branch list) runs as one step of its own."""
    ends = [x for x in entry_table(entry) if not x.entry.children and x.entry.layer is not None]
    return fold(ends, lambda x: x.entry.layer.python_steps(tuple(x.input_shape)), held=True)


def check_steps(entry: Entry, opts: Options) -> int:
    """Python steps a check of the entry on its own runs, about: its numeric forwards (two per
    element of its input and parameters where gradient_checks checks them element by element, else
    FORWARDS_PER_DIRECTION per direction) times the steps of one forward."""
    forwards = FORWARDS_PER_DIRECTION * opts.directions
    if not entry.children and entry.layer is not None:
        sizes = [numel(entry.input_shape), *map(numel, entry.layer.param_shapes(tuple(entry.input_shape)).values())]
        out = numel(entry.output_shape)
        if opts.full or all(n <= ELEMENTWISE_MAX and n * out <= ELEMENTWISE_WORK for n in sizes):
            forwards = 2 * sum(sizes)
    return forwards * python_steps(entry)


def _fitted(entry: Entry, need: int, room: Budget, scale: float) -> tuple[Entry, str] | str:
    """(the entry made to fit the budget, how) or, when nothing fits, why it is skipped. Each check
    fits beside the run's noise pool: the notes add the pool back."""
    def fits(e: Entry) -> bool:
        return check_memory(e, scale) <= room.limit

    budget_text = f"above the memory budget of {mb(room.total)}"
    own = f"at its own input {shape_text(entry)} it needs about {mb(need + room.pool)}, {budget_text}"
    shorter = shorter_input(entry, fits)
    if shorter is not None:
        return shorter, f"checked at input {shape_text(shorter)}: {own}"
    copy = smaller_copy(entry, fits)
    if copy is not None:
        at = "" if copy[0].input_shape == entry.input_shape else f", at input {shape_text(copy[0])}"
        return copy[0], f"checked as a smaller copy, {copy[1]}{at}: {own}"
    if entry.children:
        return (f"its parameters alone need about {mb(check_memory(entry, 0.0) + room.pool)}, {budget_text}; "
                "each layer and block inside it is checked on its own")
    return f"needs about {mb(need + room.pool)}, {budget_text}"


def _shortened(entry: Entry, room: Budget, scale: float) -> tuple[Entry, str]:
    """(the entry on a shorter input, how) when its forward alone is above MAX_MACS; else (the entry, '')."""
    if entry.macs <= MAX_MACS:
        return entry, ""
    shorter = shorter_input(entry, lambda e: check_memory(e, scale) <= room.limit)
    if shorter is None or shorter is entry:
        return entry, ""
    return shorter, (f"checked at input {shape_text(shorter)}: at its own input {shape_text(entry)} "
                     f"its forward alone takes {entry.macs:.2e} MACs, above {MAX_MACS:.0e}")


def _quicker(entry: Entry, opts: Options, fits_memory: Fits) -> tuple[Entry, str] | None:
    """(the entry made to run at most MAX_STEPS Python steps, how) or None: a smaller copy on the
    same input first (a recurrent layer keeps its time steps, which its recurrence needs), else the
    same layer on a shorter input, else a smaller copy on one."""
    def fits(e: Entry) -> bool:
        return check_steps(e, opts) <= MAX_STEPS and fits_memory(e)

    own = (f"at its own size its check runs about {check_steps(entry, opts):.1e} Python steps (numeric forwards "
           f"× each forward's steps), above {MAX_STEPS:.0e}")
    same = smaller_copy(entry, lambda e: tuple(e.input_shape) == tuple(entry.input_shape) and fits(e))
    if same is not None:
        return same[0], f"checked as a smaller copy, {same[1]}: {own}"
    shorter = shorter_input(entry, fits)
    if shorter is not None:
        return shorter, f"checked at input {shape_text(shorter)}: {own}"
    copy = smaller_copy(entry, fits)
    if copy is not None:
        return copy[0], f"checked as a smaller copy, {copy[1]}, at input {shape_text(copy[0])}: {own}"
    return None


def _wanted(report: Report, opts: Options) -> Iterator[Want | Dropped]:
    """Every check the run wants, in order: each selected layer and block (children first), each
    layer's batch-2 copy right after it when the input's batch is 1 (or why the layer has none)."""
    batch1 = report.network.input_shape[0] == 1
    for entry, path, name, times in places(report):
        if not _selected(path, name, opts.only):
            continue
        yield Want(entry, path, name, times, False)
        if batch1 and opts.batch2 and entry.layer is not None and not entry.children:
            try:
                twin = batch2_entry(entry)
            except ConfigError as exc:
                yield Dropped(Skipped(path, name, entry.type, "every check @ batch 2",
                                      f"the layer refuses batch 2: {exc.message}"))
                continue
            yield Want(twin, path, name, times, True)


def _grouped(wanted: Iterable[Want | Dropped], dedup: bool) -> list[list[Want] | Dropped]:
    """The wanted checks with identical ones grouped (when dedup), in the order of each group's
    first place; what is dropped already stays where it is."""
    memo: dict[int, Any] = {}
    groups: dict[Any, list[Want]] = {}
    out: list[list[Want] | Dropped] = []
    for k, want in enumerate(wanted):
        if isinstance(want, Dropped):
            out.append(want)
            continue
        key = (signature(want.entry, memo), want.batch2) if dedup else k
        if key in groups:
            groups[key].append(want)
        else:
            groups[key] = [want]
            out.append(groups[key])
    return out


def _passes(report: Report, whole: Entry, opts: Options, room: Budget) -> tuple[dict[str, Entry], Task | None, list[Dropped]]:
    """Where passes run, by path: the network when it fits (and its task, the inner tasks to come),
    else its largest blocks that fit (and the network's skip); none with --only."""
    if opts.only:
        return {}, None, []
    need = pass_need(whole)
    if need <= room.limit:
        return {"": whole}, Task(whole, "", report.network.name, need=need), []
    hint = ("--max-memory raises the budget" if check_memory(whole, 0.0) > room.limit // 2
            else "--batch 1 or a smaller --input shrink it, --max-memory raises the budget")
    skip = Skipped(NETWORK, report.network.name, "network", "end to end",
                   f"needs about {mb(need + room.pool)}, above the memory budget of {mb(room.total)}; {hint}")
    return dict(_largest_blocks(report, room.limit)), None, [Dropped(skip, need)]


def _pass_of(path: str, passes: dict[str, Entry]) -> str | None:
    """The path of the pass whose subtree holds this path, if any."""
    if "" in passes:
        return ""
    return next((p for p in passes if path.startswith(p + ".")), None)


def pass_task(want: Want, entry: Entry, places: tuple[Place, ...], inner: dict[str, Task]) -> Task:
    """A pass over the network or a block: its own checks, and those of every task inside it,
    from one forward and backward."""
    return Task(entry, want.path, want.name, need=pass_need(entry), copies=want.times, places=places, inner=inner)


def inner_task(want: Want, places: tuple[Place, ...]) -> Task:
    """A layer or block checked inside a pass, on the pass's own arrays (it holds nothing more)."""
    return Task(want.entry, want.path, want.name, copies=want.times, places=places)


def own_task(want: Want, places: tuple[Place, ...], opts: Options, room: Budget) -> Task | Dropped:
    """A layer or block (or a layer's batch-2 copy) checked on its own, made to fit: a shorter
    input or a smaller copy when it needs more than the budget, a shorter input when its forward
    is above MAX_MACS, a quicker copy when its check is above MAX_STEPS Python steps; dropped,
    with why, when none does."""
    scale = 2.0 if want.batch2 else 1.0
    need = check_memory(want.entry, scale)
    fitted = _fitted(want.entry, need, room, scale) if need > room.limit else _shortened(want.entry, room, scale)
    if isinstance(fitted, str):
        return _dropped(want, places, fitted, need)
    entry, reduced = fitted
    if check_steps(entry, opts) > MAX_STEPS:
        quicker = _quicker(entry, opts, lambda e: check_memory(e, scale) <= room.limit)
        if quicker is None:
            return _dropped(want, places, f"its check would run about {check_steps(entry, opts):.1e} Python steps "
                            f"(numeric forwards × each forward's steps), above {MAX_STEPS:.0e}, "
                            "and no shorter input or smaller copy runs fewer")
        entry, note = quicker
        reduced = "; ".join(filter(None, [reduced, note]))
    return Task(entry, want.path, want.name, want.batch2, check_memory(entry, scale), want.times, places, reduced=reduced)


def _dropped(want: Want, places: tuple[Place, ...], reason: str, need: int = 0) -> Dropped:
    """A check skipped at its place, counted for the identical places it stands for too."""
    more = want.times - 1 + sum(n for _, _, n in places)
    what = "every check" + (" @ batch 2" if want.batch2 else "")
    reason += f" (as at {more:,} identical places)" if more else ""
    return Dropped(Skipped(want.path, want.name, want.entry.type, what, reason), need)


def _planned(group: list[Want], passes: dict[str, Entry], opts: Options, room: Budget) -> Planned | Dropped:
    """What a group of identical checks becomes: a pass (its inner tasks filled in by _ordered), a
    task inside a pass, or a task on its own (a layer whose check takes too many Python steps
    leaves its pass: it would take as long there)."""
    want = group[0]
    places = tuple((w.path, w.name, w.times) for w in group[1:])
    if not want.batch2 and want.path in passes:
        return Planned(pass_task(want, passes[want.path], places, {}), want.path)
    within = None if want.batch2 else _pass_of(want.path, passes)
    if within is not None and (want.entry.children or check_steps(want.entry, opts) <= MAX_STEPS):
        return Planned(inner_task(want, places), within)
    planned = own_task(want, places, opts, room)
    return planned if isinstance(planned, Dropped) else Planned(planned, None)


def _ordered(planned: list[Planned], passes: dict[str, Entry], network: Task | None) -> list[Task]:
    """The tasks in the order they run: the pass over the network or the passes over blocks, each
    with the tasks made inside it, then every task on its own in the order of its place.

    A block pass with nothing inside it left to check (all checked at identical places before)
    comes after the others, the later such blocks first (a task's index seeds its generator, so
    this order is part of a run's output)."""
    inner: dict[str, dict[str, Task]] = {p: {} for p in passes}
    for p in planned:
        if p.within is not None and p.task.path != p.within:
            inner[p.within][p.task.path] = p.task
    if network is not None:
        return [replace(network, inner=inner[""])] + [p.task for p in planned if p.within is None]
    blocks = [replace(p.task, inner=inner[p.task.path]) for p in planned if p.task.path == p.within]
    head = [b for b in blocks if b.inner] + [b for b in reversed(blocks) if not b.inner]
    return head + [p.task for p in planned if p.within is None]


def plan_tasks(report: Report, opts: Options) -> tuple[list[Task], list[Skipped]]:
    """The checks to run, in order (passes over the network or its largest blocks that fit, with
    the layers and blocks inside them; then layers on their own; then every layer at batch 2),
    and those skipped, with why. Raises MemoryBudgetError when nothing fits."""
    whole = network_entry(report)
    room = run_budget(whole, opts.max_memory)
    passes, network, dropped = _passes(report, whole, opts, room)
    planned: list[Planned] = []
    for group in _grouped(_wanted(report, opts), opts.dedup):
        outcome = group if isinstance(group, Dropped) else _planned(group, passes, opts, room)
        (dropped if isinstance(outcome, Dropped) else planned).append(outcome)
    tasks = _ordered(planned, passes, network)
    if not tasks and any(d.need for d in dropped):
        raise _too_large(min(d.need for d in dropped if d.need), room)
    return tasks, [d.skipped for d in dropped]


def _too_large(smallest: int, room: Budget) -> MemoryBudgetError:
    """Why nothing runs: the smallest check (bytes) does not fit beside the noise pool."""
    if smallest <= room.total:  # the smallest check fits alone: the pool (sized by the largest weight) is what does not
        return MemoryBudgetError(
            f"verify would need about {mb(smallest + room.pool)}, {mb(room.pool)} of it the noise its random directions "
            f"are made from (twice the network's largest tensor), but the budget is {mb(room.total)}; "
            f"raise it with --max-memory (at least {mb(smallest + room.pool)})"
        )
    return MemoryBudgetError(
        f"verify would need about {mb(smallest + room.pool)} but the budget is {mb(room.total)}; "
        "check a smaller case with --batch 1 or a smaller --input (e.g. --input 3x64x64), "
        "or raise the budget with --max-memory"
    )
