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
The plan is a list of tasks; running it is a loop over them. What keeps a run fast and within
memory (BLAS threads, the noise pool, the budget, freeing memory between checks) is resources.py.
Nothing here names a layer type: it all goes through the Layer methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from ..analysis import Report
from ..errors import Terminated
from ..lazy import np
from . import resources
from .checks import check_instance, check_network
from .execution import Chain, Instance, Routes, UserCodeError, backward, build, forward, share_streams
from .planning import NETWORK, Task, network_entry, plan_tasks, selection
from .report import Check, Options, Result, Skipped, for_dtype

__all__ = ["Options", "Check", "Result", "Skipped", "for_dtype", "verify", "plan", "build_network", "Instance",
           "forward", "backward", "UserCodeError", "selection"]


def build_network(report: Report, opts: Options, rng: Any = None) -> Instance:
    """The whole network as one instance, with random parameters of opts.dtype."""
    rng = rng if rng is not None else np.random.default_rng(opts.seed)
    root = Instance(network_entry(report), "", report.network.name, _routes(report) or Chain())
    root.sequences = [[build(e, e.seg, e.name, rng, opts.impl, opts.dtype) for e in report.entries]]
    return share_streams(root)


def _routes(report: Report) -> Routes | None:
    """How the top-level entries of a network of streams read one another (None: one after another)."""
    net, entries = report.network, report.entries
    if not net.inputs and not any(e.source for e in entries):
        return None
    main = net.main_input or ""
    sources = [e.source or (entries[i - 1].name if i else main) for i, e in enumerate(entries)]
    others = {name: shape for name, shape in net.streams().items() if name != main}
    bounds = {name: next((e.ids for e in entries if e.source == name), None) if report.ids.get(name) else None
              for name in others}
    return Routes(main, sources, bounds, {name: (net.batch, *shape) for name, shape in others.items()})


def plan(report: Report, opts: Options) -> tuple[Instance, list[Task]]:
    """The network as one instance (every parameter allocated), and the checks verify would run."""
    tasks, _ = plan_tasks(report, opts)
    return build_network(report, opts), tasks


def verify(report: Report, opts: Options | None = None, progress: Callable[[str, int, int], None] | None = None) -> Result:
    """Check every selected layer, block and the network; progress(label, i, n) before each.

    A user's implementation that raises fails the check of the layer where it raised (the
    exception is kept in result.errors for a traceback); the blocks around it are skipped.
    """
    resources.limit_blas_threads()
    opts = opts or Options()
    tasks, skipped = plan_tasks(report, opts)
    run = _Run(report, opts, tasks, Result(report.network.name, skipped=list(skipped)))
    noise = resources.noise_pool(network_entry(report), opts.seed)
    i = 0
    with np.errstate(over="ignore", under="ignore"):
        try:
            for i, task in enumerate(tasks):
                if progress:
                    progress(task.label, i, len(tasks))
                run.task(task, resources.check_generator(opts.seed, i, noise))
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: keep the checks done, say how many did not run
            run.result.interrupted, run.result.planned = len(tasks) - i, len(tasks)
            run.result.stopped_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    return run.result


class _Run:
    """One verify run's checking: each task's checks reported into the result, the places whose
    implementation raised, and the arrays a batch-2 copy reuses."""

    def __init__(self, report: Report, opts: Options, tasks: list[Task], result: Result) -> None:
        self.report, self.opts, self.result = report, opts, result
        self.raised: set[str] = set()
        self.reuse = resources.Reuse(tasks)

    def instance(self, task: Task, rng: Any) -> Instance:
        """The task's instance with parameters of its own."""
        if task.is_network:
            return build_network(self.report, self.opts, rng)
        return share_streams(build(task.entry, task.path, task.name, rng, self.opts.impl, self.opts.dtype))

    def task(self, task: Task, rng: Any) -> None:
        """Build, check and report one task; one the system cannot allocate is skipped and said."""
        short = ""
        try:
            inst = self.reuse.take(task)
            inst = inst if inst is not None else self.instance(task, rng)
            self.check(task, inst, rng)
        except MemoryError as exc:  # the system gives less than the budget: this check is skipped, the rest run
            inst, short = None, str(exc) or "MemoryError"
        self.reuse.keep(task, inst)
        if short:  # out of the except block: its traceback, and the arrays its frames hold, are gone
            resources.release_memory()
            self.unallocated(task, short, rng)
            return
        del inst
        resources.after_check(task.need)

    def check(self, task: Task, inst: Instance, rng: Any) -> None:
        """One task's checks, reported: a pass over the network or a block (with the layers and
        blocks inside it), or one layer or block on its own."""
        is_pass = task.is_network or bool(task.inner)
        try:
            if is_pass:
                self.check_pass(task, inst, rng)
            else:
                self.check_alone(task, inst, rng)
        except UserCodeError as exc:
            self.raised_in(task, exc, inst)
            if is_pass:  # the layers and blocks it was to check: each on its own
                self.inner_alone(task, inst, rng)

    def check_pass(self, task: Task, inst: Instance, rng: Any) -> None:
        """A pass's rows: each block's and layer's inside it reported as its own task's."""
        copies = self.opts.batch2 and self.report.network.input_shape[0] == 1  # then one direction at full size
        rows = list(check_network(inst, self.opts, rng, lambda b: b.path in task.inner, 1 if copies else None))
        if self.opts.dtype != "float64" and any(_numeric_failure(c) for b, cs in rows if not b.is_leaf for c in cs):
            rows = _composition_in_float64(inst, task, self.opts, rng, rows)
        for block, checks in rows:
            _report(self.result, checks, task.inner.get(block.path, task))

    def check_alone(self, task: Task, inst: Instance, rng: Any) -> None:
        """A layer's or block's own rows; a block failing in float32 is judged again in float64."""
        suffix = " @ batch 2" if task.batch2 else ""
        rows = check_instance(inst, self.opts, rng, suffix)
        if self.opts.dtype != "float64" and not inst.is_leaf and any(_numeric_failure(c) for c in rows):
            rows = check_instance(_in_float64(inst), replace(self.opts, dtype="float64"), rng, suffix)
            for c in rows:
                c.note += IN_FLOAT64
        _report(self.result, rows, task)

    def inner_alone(self, task: Task, inst: Instance, rng: Any) -> None:
        """The tasks of a pass that a user's implementation stopped, each checked on its own."""
        by_path = {i.path: i for i in inst.walk()}
        for path, sub in task.inner.items():
            if path in self.raised:
                continue
            try:
                _report(self.result, check_instance(by_path[path], self.opts, rng), sub)
            except UserCodeError as exc:
                self.raised_in(sub, exc, by_path[path])

    def unallocated(self, task: Task, error: str, rng: Any) -> None:
        """A check the system could not allocate (a budget above what it gives): skipped and said; the
        layers and blocks a pass was to check are each checked on their own, as far as memory allows."""
        what = ("end to end" if task.is_network else "every check") + (" @ batch 2" if task.batch2 else "")
        reason = f"out of memory: {error} (the memory budget is above what the system gives: --max-memory lowers it)"
        self.result.skipped.append(Skipped(task.path or NETWORK, task.name, task.entry.type, what, reason))
        reported = {c.path for c in self.result.checks} if task.inner else set()
        for path, sub in task.inner.items():
            if path in reported or path in self.raised:
                continue
            short = ""
            try:
                self.check(sub, self.instance(sub, rng), rng)
            except MemoryError as exc:
                short = str(exc) or "MemoryError"
            if short:
                resources.release_memory()
                self.unallocated(sub, short, rng)

    def raised_in(self, task: Task, exc: UserCodeError, inst: Instance) -> None:
        """A user's implementation raised: one failed row where it raised; the checks around it are skipped."""
        suffix = " @ batch 2" if task.batch2 else ""
        where = exc.inst.path
        what = "end to end" if task.is_network else "every check"
        if where in self.raised:  # already reported where it raised: the blocks around it cannot be checked
            reason = ("its implementation failed (reported above)" if where == task.path
                      else f"contains {where}, whose implementation failed")
            self.result.skipped.append(Skipped(task.path or NETWORK, task.name, task.entry.type, what + suffix, reason))
            return
        if exc.inst is not inst:
            self.result.skipped.append(Skipped(task.path or NETWORK, task.name, task.entry.type, what + suffix,
                                               f"contains {where}, whose implementation failed"))
        self.raised.add(where)
        self.result.errors.append(exc)
        during = "" if exc.inst is inst else f" (while checking {task.label})"
        row = Check(where, exc.inst.name, exc.inst.layer.type_name, f"{exc.method}(){suffix}",
                    "returned" if exc.verb == "returned" else "raised", float("inf"), 0.0, False, f"{exc.detail}{during}")
        _report(self.result, [row], task if exc.inst is inst else None)


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


def _report(result: Result, checks: list[Check], task: Task | None = None) -> None:
    """A check's rows and, given its task, the same rows for every identical place (one row for a
    place that stands for many identical copies of a repeat, with their number); without a task,
    the rows at their own place alone."""
    if task is None:
        result.checks += checks
        return
    if task.reduced:  # made to fit the memory budget: said on every row
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
