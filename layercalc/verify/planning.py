"""Planning a verify run: which layers, blocks and end-to-end checks run, in what order, which are
identical to one already checked (deduplicated), which are skipped for memory, and the batch-2
copies of every layer when the input's batch is 1.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterator

from ..analysis import LISTED_COPIES, Entry, Report
from ..errors import ConfigError, MemoryBudgetError, UsageError
from ..layers import numel
from .checks import ELEMENTWISE_MAX, ELEMENTWISE_WORK
from .memory import budget, check_memory, largest_leaf_activations, mb, noise_bytes
from .reduce import Fits, shape_text, shorter_input, smaller_copy
from .report import Options, Skipped

NETWORK = "(network)"


class Task:
    """One check to run: an entry at a path (or a batch-2 copy of a leaf), and the other places
    with the same type, arguments and input shape, which report its outcome; a place may stand
    for many identical copies of a repeat (its path a range, 'blocks.1-999', as the calculator's
    folded row)."""

    __slots__ = ("entry", "path", "name", "batch2", "places", "need", "copies", "inner", "reduced")

    def __init__(self, entry: Entry, path: str, name: str, batch2: bool, need: int) -> None:
        self.entry, self.path, self.name, self.batch2, self.need = entry, path, name, batch2, need
        self.places: list[tuple[str, str, int]] = []  # (path, name, identical copies it stands for)
        self.copies = 1  # identical copies its own place stands for
        self.inner: dict[str, Task] = {}  # the network's: blocks checked from its forward and backward, by path
        self.reduced = ""  # how the check was made to fit the memory budget (a shorter input, a smaller copy)

    @property
    def is_network(self) -> bool:
        """True for the whole network's end-to-end check."""
        return self.path == ""

    @property
    def label(self) -> str:
        """What the progress display and the skip notes call it."""
        return (self.path or NETWORK) + (" @ batch 2" if self.batch2 else "")


def signature(entry: Entry, memo: dict[int, Any]) -> Any:
    """What makes two entries the same check: type, arguments, input shape and, for blocks, their children's."""
    key = id(entry)
    if key not in memo:
        kids = tuple(signature(c, memo) for c in entry.children)
        args = repr(sorted(entry.layer.arguments().items())) if entry.layer is not None else ""
        # the entry is kept with its signature: a dropped entry's id is reused by the next one made
        memo[key] = (entry, (entry.type, args, tuple(entry.input_shape), entry.copies, kids))
    return memo[key][1]


def _join(path: str, seg: str) -> str:
    return f"{path}.{seg}" if path else seg


def places(entries: list[Entry], path: str) -> Iterator[tuple[Entry, str, str, int]]:
    """(entry, path, name, identical copies it stands for) of every leaf and block, children first,
    as the calculator lists them: a repeat of more than LISTED_COPIES copies lists its distinct
    copies, then one place for the identical rest ('blocks.2-999', 998 copies)."""
    for e in entries:
        yield from _place(e, _join(path, e.seg), e.name, 1)


def copies(e: Entry) -> Iterator[tuple[str, Entry, int]]:
    """(path segment, entry, identical copies) of a repeat group's places, as the calculator's rows
    list them (Report.walk): each copy of a short repeat; of a long one, each distinct copy, then
    the rest of the last one as one place ('2-999')."""
    k = 0
    for seq in e.runs():
        for run in seq:
            listed = run.times if e.copies <= LISTED_COPIES else 1
            for j in range(listed):
                yield str(k + j), run.entry, 1
            k += listed
            rest = run.times - listed
            if rest:
                yield (f"{k}-{k + rest - 1}" if rest > 1 else str(k)), run.entry, rest
                k += rest


def _place(e: Entry, path: str, name: str, times: int) -> Iterator[tuple[Entry, str, str, int]]:
    if e.copies:
        for seg, child, n in copies(e):
            yield from _place(child, f"{path}.{seg}", f"{name}.{seg}", times * n)
    else:
        for c in e.children:
            yield from _place(c, _join(path, c.seg), c.name, times)
    yield e, path, name, times


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
    return Entry(seg=e.seg, name=e.name, type=e.type, input_shape=x, output_shape=y, params=count,
                 tensors=numel(y), layer=layer, ids=e.ids)


def selection(report: Report, opts: Options) -> tuple[int, int]:
    """(how many layers and blocks --only selects, how many there are); all without --only. Raises UsageError for an
    --only that names nothing (with the closest names and paths) and for an --impl of a type the
    network does not use."""
    names: set[str] = set()
    types: set[str] = set()
    count = total = 0
    for entry, path, name, _ in places(report.entries, ""):
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


def _roots(entries: list[Entry], path: str, limit: int, out: dict[str, Entry]) -> None:
    """The largest blocks that fit the budget, by path (checked each as one pass, like the network)."""
    for e in entries:
        p = _join(path, e.seg)
        if not e.children:
            continue
        if e.copies:  # a repeat group: each copy (the identical rest of a long one as one place)
            for seg, child, _ in copies(e):
                if child.children and pass_need(child) <= limit:
                    out[f"{p}.{seg}"] = child
                elif child.children:
                    _roots(child.children, f"{p}.{seg}", limit, out)
        elif pass_need(e) <= limit:
            out[p] = e
        else:
            _roots(e.children, p, limit, out)


MAX_MACS = 10**10  # a check whose forward takes more runs on a shorter input (minutes otherwise)
# Python steps a check may run in all (its numeric forwards times each forward's Layer.python_steps):
# array work does not show them (a 10-layer LSTM on 4 steps, checked element by element: 77,000
# steps, most of its run)
MAX_STEPS = 10**5
FORWARDS_PER_DIRECTION = 4  # numeric forwards of a direction, about: a difference and its confirmation


def python_steps(entry: Entry) -> int:
    """Python steps one forward of the subtree takes: every layer's Layer.python_steps, as often as it runs."""
    if not entry.children:
        return entry.layer.python_steps(tuple(entry.input_shape)) if entry.layer is not None else 0
    return sum(run.times * python_steps(run.entry) for seq in entry.runs() for run in seq)


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


def _fitted(entry: Entry, need: int, limit: int, scale: float, pool: int) -> tuple[Entry, str] | str:
    """(the entry made to fit the budget, how) or, when nothing fits, why it is skipped. limit is
    what the budget leaves beside the run's noise pool (pool bytes): the notes add the pool back."""
    def fits(e: Entry) -> bool:
        return check_memory(e, scale) <= limit

    budget_text = f"above the memory budget of {mb(limit + pool)}"
    own = f"at its own input {shape_text(entry)} it needs about {mb(need + pool)}, {budget_text}"
    shorter = shorter_input(entry, fits)
    if shorter is not None:
        return shorter, f"checked at input {shape_text(shorter)}: {own}"
    copy = smaller_copy(entry, fits)
    if copy is not None:
        at = "" if copy[0].input_shape == entry.input_shape else f", at input {shape_text(copy[0])}"
        return copy[0], f"checked as a smaller copy, {copy[1]}{at}: {own}"
    if entry.children:
        return (f"its parameters alone need about {mb(check_memory(entry, 0.0) + pool)}, {budget_text}; "
                "each layer and block inside it is checked on its own")
    return f"needs about {mb(need + pool)}, {budget_text}"


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


def plan_tasks(report: Report, opts: Options) -> tuple[list[Task], list[Skipped]]:
    """The checks to run, in order (passes over the network or its largest blocks that fit, with
    the layers and blocks inside them; then layers on their own; then every layer at batch 2),
    and those skipped, with why."""
    whole = network_entry(report)
    total = budget(opts.max_memory)
    pool = noise_bytes(whole)  # held through the whole run: every check fits beside it
    limit = total - pool
    memo: dict[int, Any] = {}
    seen: dict[Any, Task] = {}
    dropped: dict[Any, list[Any]] = {}  # signature -> [its Skipped, identical places not checked either]
    tasks: list[Task] = []
    skipped: list[Skipped] = []
    smallest = None
    batch1 = report.network.input_shape[0] == 1
    network = None if opts.only else Task(whole, "", report.network.name, False, pass_need(whole))
    roots: dict[str, Task] = {}
    if network is not None and network.need > limit:
        smallest = network.need
        hint = ("--max-memory raises the budget" if check_memory(whole, 0.0) > limit // 2
                else "--batch 1 or a smaller --input shrink it, --max-memory raises the budget")
        skipped.append(Skipped(NETWORK, network.name, "network", "end to end",
                               f"needs about {mb(network.need + pool)}, above the memory budget of {mb(total)}; {hint}"))
        network = None
        found: dict[str, Entry] = {}
        _roots(report.entries, "", limit, found)
        roots = {p: Task(e, p, e.name, False, pass_need(e)) for p, e in found.items()}
    elif network is not None:
        roots = {"": network}

    def root_of(path: str) -> Task | None:
        if "" in roots:
            return roots[""]
        return next((t for p, t in roots.items() if path.startswith(p + ".")), None)

    def add(entry: Entry, path: str, name: str, batch2: bool, times: int) -> None:
        nonlocal smallest
        key = (signature(entry, memo), batch2)
        if opts.dedup and key in dropped:  # identical to a check skipped above: counted with it
            dropped[key][1] += times
            return
        if opts.dedup and key in seen:
            seen[key].places.append((path, name, times))
            return
        if not batch2 and path in roots:  # a block checked as one pass, its insides with it
            task = roots[path]
            task.name, task.copies = name, times
            seen[key] = task
            tasks.insert(sum(1 for t in tasks if t.inner or t.is_network), task)
            return
        root = None if batch2 else root_of(path)
        if root is not None and not entry.children and check_steps(entry, opts) > MAX_STEPS:
            root = None  # its checks inside the pass would take as long: checked on its own, made quicker
        scale = 2.0 if batch2 else 1.0
        need = 0 if root else check_memory(entry, scale)
        task = Task(entry, path, name, batch2, need)
        task.copies = times
        if need > limit:
            fitted = _fitted(entry, need, limit, scale, pool)
            if isinstance(fitted, str):
                smallest = need if smallest is None else min(smallest, need)
                skipped.append(Skipped(path, name, entry.type, "every check" + (" @ batch 2" if batch2 else ""), fitted))
                dropped[key] = [skipped[-1], times - 1]
                return
            task.entry, task.reduced = fitted
            task.need = check_memory(task.entry, scale)
        elif not root and entry.macs > MAX_MACS:  # fits, but would take minutes: a shorter input
            shorter = shorter_input(entry, lambda e: check_memory(e, scale) <= limit)
            if shorter is not None and shorter is not entry:
                task.entry, task.need = shorter, check_memory(shorter, scale)
                task.reduced = (f"checked at input {shape_text(shorter)}: at its own input {shape_text(entry)} "
                                f"its forward alone takes {entry.macs:.2e} MACs, above {MAX_MACS:.0e}")
        if not root and check_steps(task.entry, opts) > MAX_STEPS:  # fits, but would take minutes of Python steps
            quicker = _quicker(task.entry, opts, lambda e: check_memory(e, scale) <= limit)
            if quicker is None:
                skipped.append(Skipped(path, name, entry.type, "every check" + (" @ batch 2" if batch2 else ""),
                                       f"its check would run about {check_steps(task.entry, opts):.1e} Python steps "
                                       f"(numeric forwards × each forward's steps), above {MAX_STEPS:.0e}, "
                                       "and no shorter input or smaller copy runs fewer"))
                dropped[key] = [skipped[-1], times - 1]
                return
            task.entry, note = quicker
            task.need = check_memory(task.entry, scale)
            task.reduced = "; ".join(filter(None, [task.reduced, note]))
        seen[key] = task
        if root is not None:
            root.inner[path] = task
        else:
            tasks.append(task)

    for entry, path, name, times in places(report.entries, ""):
        if not _selected(path, name, opts.only):
            continue
        add(entry, path, name, False, times)
        if batch1 and opts.batch2 and entry.layer is not None and not entry.children:
            try:
                twin = batch2_entry(entry)
            except ConfigError as exc:
                skipped.append(Skipped(path, name, entry.type, "every check @ batch 2", f"the layer refuses batch 2: {exc.message}"))
                continue
            add(twin, path, name, True, times)
    for skip, more in dropped.values():
        if more:
            skip.reason += f" (as at {more:,} identical places)"
    if network is not None:
        tasks.insert(0, network)  # the layers and blocks inside it first, then every layer at batch 2
    if not tasks and smallest is not None:
        if smallest <= total:  # the smallest check fits alone: the pool (sized by the largest weight) is what does not
            raise MemoryBudgetError(
                f"verify would need about {mb(smallest + pool)}, {mb(pool)} of it the noise its random directions "
                f"are made from (twice the network's largest tensor), but the budget is {mb(total)}; "
                f"raise it with --max-memory (at least {mb(smallest + pool)})"
            )
        raise MemoryBudgetError(
            f"verify would need about {mb(smallest + pool)} but the budget is {mb(total)}; "
            "check a smaller case with --batch 1 or a smaller --input (e.g. --input 3x64x64), "
            "or raise the budget with --max-memory"
        )
    return tasks, skipped
