"""May import: analysis, errors, layers, lazy, render.formats.

verify: run every layer's NumPy forward and backward and check them against numbers.

For each layer, each block and the whole network (children first, in execution order):
- the NumPy output shape equals the calculator's, and the parameter arrays' size its params;
- analytic gradients (input and every parameter) against float64 numeric derivatives of the loss
  L = <g, f(x; θ)> with a random upstream gradient g: every element for small tensors, random
  directions for large ones (as JAX's check_vjp and torch's fast gradcheck do), so the cost does
  not grow with tensor size (differences.py, checks.py);
- the layer type's own identities (for convolutions: K_conv and the flipped-kernel correlation);
- with --impl, a user's implementation against the numbers and against the reference;
- every layer again at batch 2 when the input's batch is 1, so a batch-dimension bug cannot hide.

Identical layers and blocks (type, arguments, input shape) are checked once and reported for
every place; each check builds its own arrays and drops them, so memory is bounded by the largest
check, and a check above the memory budget is skipped and said so (planning.py, memory.py).
Nothing here names a layer type: it all goes through the Layer methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from ..analysis import Report
from ..errors import Terminated
from ..lazy import np
from .checks import check_instance, check_network
from .differences import Noise, generator
from .execution import Chain, Instance, UserCodeError, backward, build, forward
from .memory import noise_elements, release_memory
from .planning import Task, network_entry, plan_tasks, selection
from .report import Check, Options, Result, Skipped, for_dtype

__all__ = ["Options", "Check", "Result", "Skipped", "for_dtype", "verify", "plan", "build_network", "Instance",
           "forward", "backward", "UserCodeError", "selection"]


TRIM_MIN = 1 << 26  # after a check estimated above this (64 MiB), the freed heap goes back to the system
NOISE_STREAM = 0x6E6F697365  # the noise pool's seed beside the run's: its own stream, apart from every check's


def build_network(report: Report, opts: Options, rng: Any = None) -> Instance:
    """The whole network as one instance, with random parameters of opts.dtype."""
    rng = rng if rng is not None else np.random.default_rng(opts.seed)
    root = Instance(network_entry(report), "", report.network.name, Chain())
    root.sequences = [[build(e, e.seg, e.name, rng, opts.impl, opts.dtype) for e in report.entries]]
    return root


def plan(report: Report, opts: Options) -> tuple[Instance, list[Task]]:
    """The network as one instance (every parameter allocated), and the checks verify would run."""
    tasks, _ = plan_tasks(report, opts)
    return build_network(report, opts), tasks


def _instance(task: Task, report: Report, opts: Options, rng: Any) -> Instance:
    if task.is_network:
        return build_network(report, opts, rng)
    return build(task.entry, task.path, task.name, rng, opts.impl, opts.dtype)


BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _blas_threads() -> None:
    """One BLAS thread when every core is already busy (1-minute load average at least the number
    of cores): threads that wait for a core cost more than they give (resnet18's verify on 2
    loaded cores: 5.5 s with one thread, 9.5 s with two). Only before NumPy is loaded, and never
    over the user's own setting."""
    import os
    import sys

    if "numpy" in sys.modules or any(v in os.environ for v in BLAS_THREADS):
        return
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return
    if busy:
        for v in BLAS_THREADS:
            os.environ[v] = "1"


def verify(report: Report, opts: Options | None = None, progress: Callable[[str, int, int], None] | None = None) -> Result:
    """Check every selected layer, block and the network; progress(label, i, n) before each.

    A user's implementation that raises fails the check of the layer where it raised (the
    exception is kept in result.errors for a traceback); the blocks around it are skipped.
    """
    _blas_threads()
    opts = opts or Options()
    tasks, skipped = plan_tasks(report, opts)
    result = Result(report.network.name, skipped=list(skipped))
    raised: set[str] = set()
    kept: Instance | None = None  # the last layer checked on its own, whose batch-2 copy may follow
    # the layers of the pass over the network whose batch-2 copy follows: their parameter arrays
    # are lent to it instead of drawn again. Only the network's: every check after it is a small
    # batch-2 copy, so what is lent adds to no large check's peak
    wanted = {t.path for t in tasks if t.batch2 and not t.reduced}
    lent: dict[str, Instance] = {}
    # every check's directions and weights are views of it, drawn at once for the network's largest tensor
    noise = Noise(np.random.default_rng([opts.seed, NOISE_STREAM]), noise_elements(network_entry(report)) // 2)
    i = 0
    with np.errstate(over="ignore", under="ignore"):
        try:
            for i, task in enumerate(tasks):
                if progress:
                    progress(task.label, i, len(tasks))
                rng = generator([opts.seed, i], noise)
                short = ""
                try:
                    if task.batch2 and _same_layer(kept, task):
                        inst = _twin(kept, task)  # the same layer's parameters: drawn once, not twice
                    elif task.batch2 and _same_layer(lent.get(task.path), task):
                        inst = _twin(lent.pop(task.path), task)
                    else:
                        inst = _instance(task, report, opts, rng)
                    kept = None
                    _run(result, task, inst, report, opts, rng, raised)
                except MemoryError as exc:  # the system gives less than the budget: this check is skipped, the rest run
                    inst = kept = None
                    short = str(exc) or "MemoryError"
                if short:  # out of the except block: its traceback, and the arrays its frames hold, are gone
                    release_memory()
                    _unallocated(result, task, short, report, opts, rng, raised)
                    continue
                if not task.is_network and not task.batch2 and inst.is_leaf:
                    kept = inst
                elif task.is_network:
                    lent.update((leaf.path, leaf) for leaf in inst.leaves() if leaf.path in wanted)
                del inst
                if task.need >= TRIM_MIN:
                    release_memory()  # freed arrays back to the system: a check's peak is its own
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: keep the checks done, say how many did not run
            result.interrupted, result.planned = len(tasks) - i, len(tasks)
            result.stopped_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    return result


def _run(result: Result, task: Task, inst: Instance, report: Report, opts: Options, rng: Any, raised: set[str]) -> None:
    """One task's checks, reported: a pass over the network or a block (with the layers and blocks
    inside it), or one layer or block on its own."""
    done: set[str] = set()
    try:
        if task.is_network or task.inner:
            copies = opts.batch2 and report.network.input_shape[0] == 1  # then one direction at full size
            rows = list(check_network(inst, opts, rng, lambda b: b.path in task.inner, 1 if copies else None))
            if opts.dtype != "float64" and any(_numeric_failure(c) for b, cs in rows if not b.is_leaf for c in cs):
                rows = _composition_in_float64(inst, task, opts, rng, rows)
            for block, checks in rows:
                _report(result, task.inner.get(block.path, task), checks)
                done.add(block.path)
        else:
            suffix = " @ batch 2" if task.batch2 else ""
            rows = check_instance(inst, opts, rng, suffix)
            if opts.dtype != "float64" and not inst.is_leaf and any(_numeric_failure(c) for c in rows):
                rows = check_instance(_in_float64(inst), replace(opts, dtype="float64"), rng, suffix)
                for c in rows:
                    c.note += IN_FLOAT64
            _report(result, task, rows)
    except UserCodeError as exc:
        _raised(result, task, exc, raised, inst)
        if task.is_network or task.inner:  # the layers and blocks it was to check: each on its own
            by_path = {i.path: i for i in inst.walk()}
            for path, sub in task.inner.items():
                if path in done or path in raised:
                    continue
                try:
                    _report(result, sub, check_instance(by_path[path], opts, rng))
                except UserCodeError as inner:
                    _raised(result, sub, inner, raised, by_path[path])


def _unallocated(result: Result, task: Task, error: str, report: Report, opts: Options, rng: Any,
                 raised: set[str]) -> None:
    """A check the system could not allocate (a budget above what it gives): skipped and said; the
    layers and blocks a pass was to check are each checked on their own, as far as memory allows."""
    what = ("end to end" if task.is_network else "every check") + (" @ batch 2" if task.batch2 else "")
    reason = f"out of memory: {error} (the memory budget is above what the system gives: --max-memory lowers it)"
    result.skipped.append(Skipped(task.path or "(network)", task.name, task.entry.type, what, reason))
    reported = {c.path for c in result.checks} if task.inner else set()
    for path, sub in task.inner.items():
        if path in reported or path in raised:
            continue
        short = ""
        try:
            _run(result, sub, _instance(sub, report, opts, rng), report, opts, rng, raised)
        except MemoryError as exc:
            short = str(exc) or "MemoryError"
        if short:
            release_memory()
            _unallocated(result, sub, short, report, opts, rng, raised)


def _numeric_failure(c: Check) -> bool:
    return not c.passed and c.method.startswith(("direction", "elementwise"))


IN_FLOAT64 = "; in float64 (the float32 check failed: a ReLU input within rounding of its kink?)"


def _in_float64(inst: Instance) -> Instance:
    """The instance with every layer's parameters as float64 (the same values), for a composition
    judged in float64."""
    for leaf in inst.leaves():
        leaf.params = {pname: arr.astype(np.float64) for pname, arr in leaf.params.items()}
    return inst


def _composition_in_float64(root: Instance, task: Task, opts: Options, rng: Any, rows: list[Any]) -> list[Any]:
    """A pass over a network or block whose blocks failed in float32, measured again in float64
    (a block checked on its own is, likewise, by the verify loop).

    In float32, an input of a ReLU within rounding of its kink can fall on the other side than in
    the float64 function the numbers come from, and the two gradients then differ by a whole term:
    in a deep network some always do. The layers keep their float32 checks (a failure there is
    checked again on a fresh input away from their kinks); the composition, which has no float32
    of its own, is judged in float64 on the same parameters."""
    again = dict((b.path, cs) for b, cs in check_network(_in_float64(root), replace(opts, dtype="float64"), rng,
                                                          lambda b: b.path in task.inner and not b.is_leaf))
    out = []
    for block, checks in rows:
        if not block.is_leaf and any(_numeric_failure(c) for c in checks) and block.path in again:
            checks = again[block.path]
            for c in checks:
                c.note += IN_FLOAT64
        out.append((block, checks))
    return out


def _same_layer(inst: Instance | None, task: Task) -> bool:
    """True when the task checks the instance's own layer at another batch: not a smaller copy made
    for one of the two (its parameter shapes differ, and its arguments may not suit the other's input)."""
    return inst is not None and inst.path == task.path and inst.entry.layer is task.entry.layer


def _twin(inst: Instance, task: Task) -> Instance:
    """A layer's batch-2 copy sharing its parameter arrays (same shapes: the planner kept them)."""
    twin = Instance(task.entry, task.path, task.name, inst.layer)
    twin.params, twin.reference = inst.params, inst.reference
    return twin


def _report(result: Result, task: Task, checks: list[Check]) -> None:
    """A check's rows, and the same rows for every identical place (one row for a place that stands
    for many identical copies of a repeat, with their number)."""
    if getattr(task, "reduced", ""):  # made to fit the memory budget: said on every row
        for c in checks:
            c.check += " (reduced)"
            c.note = task.reduced + (f"; {c.note}" if c.note else "")
        result.reduced += len(checks) * (1 + len(task.places))
    if task.copies > 1:
        for c in checks:
            c.copies = task.copies
        result.folded += len(checks) * (task.copies - 1)
    result.checks += checks
    for path, name, copies in task.places:
        same = f"same as {checks[0].path}" + (f" (×{copies:,})" if copies > 1 else "") if checks else ""
        for c in checks:
            result.checks.append(replace(c, path=path, name=name, copies=copies, note=same + (f"; {c.note}" if c.note else "")))
        result.deduplicated += len(checks)
        result.folded += len(checks) * (copies - 1)


def _raised(result: Result, task: Task, exc: UserCodeError, raised: set[str], inst: Instance) -> None:
    """A user's implementation raised: one failed row where it raised; the checks around it are skipped."""
    suffix = " @ batch 2" if task.batch2 else ""
    where = exc.inst.path
    what = "end to end" if task.is_network else "every check"
    if where in raised:  # already reported where it raised: the blocks around it cannot be checked
        reason = "its implementation failed (reported above)" if where == task.path else f"contains {where}, whose implementation failed"
        result.skipped.append(Skipped(task.path or "(network)", task.name, task.entry.type, what + suffix, reason))
        return
    if exc.inst is not inst:
        result.skipped.append(Skipped(task.path or "(network)", task.name, task.entry.type, what + suffix,
                                      f"contains {where}, whose implementation failed"))
    raised.add(where)
    result.errors.append(exc)
    during = "" if exc.inst is inst else f" (while checking {task.label})"
    row = Check(where, exc.inst.name, exc.inst.layer.type_name, f"{exc.method}(){suffix}", "returned" if exc.verb == "returned" else "raised",
                float("inf"), 0.0, False, f"{exc.detail}{during}")
    _report(result, task if exc.inst is inst else _Place(), [row])


class _Place:
    places: list[tuple[str, str, int]] = []
    copies = 1
