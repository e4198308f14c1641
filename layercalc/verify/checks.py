"""The checks of one instance (a layer, a block or the network): structure, gradients against
numeric derivatives, the layer type's identities and, with --impl, the catalog's reference.

Tolerances: |numeric - analytic| <= atol + rtol·|numeric| + the analytic side's own rounding,
estimated as C·ε·sqrt(layers)·sqrt(Σ (∇L_i·u_i)²) (ε the dtype's machine epsilon; independent rounding errors of each
gradient element, growing with the number of layers they pass through). The numeric side is
float64 and accurate to far better than rtol (see differences.py), so a float32 run is held to
float32's own rounding, not to a blanket tolerance.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..lazy import np
from .differences import Direction, KinkSides, Move, Start, derivative, dot, nudge, scale_of
from .execution import Instance, UserCodeError, backward, call, forward, output, with_streams
from .report import Check, Options

ELEMENTWISE_MAX = 64  # tensors up to this many elements are checked element by element...
ELEMENTWISE_WORK = 4_000_000  # ...when (elements x output size) stays below this
ROUNDING = 32  # C above: a gradient element's rounding error, in units of the dtype's machine epsilon
KINK_MARGIN = 1e-3  # inputs are kept at least this far from a layer's kinks


class Tensor:
    """One differentiable tensor of a check: its label, its array under test, its float64 twin
    (the same array in float64 runs) and the analytic gradient."""

    __slots__ = ("label", "array", "numeric", "grad", "owner", "pname", "_scale", "frozen", "frozen_where", "frozen_why")

    def __init__(self, label: str, array: Any, numeric: Any, grad: Any, owner: Instance | None, pname: str) -> None:
        self.label, self.array, self.numeric, self.grad = label, array, numeric, grad
        self.owner, self.pname = owner, pname
        self._scale: float | None = None
        # the flat ranges of rows whose gradient is zero by the layer's definition (Layer.frozen_rows)
        self.frozen: list[tuple[int, int]] = []
        rows, self.frozen_why = owner.layer.frozen_rows().get(pname, ((), "")) if owner is not None else ((), "")
        self.frozen_where = f"{label} row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}"
        if rows and array.ndim:
            width = array.size // array.shape[0]
            self.frozen = [(r * width, (r + 1) * width) for r in rows]

    def kept(self) -> Any:
        """The flat indices of the elements the numeric checks compare (all but the frozen rows)."""
        keep = np.ones(self.array.size, dtype=bool)
        for lo, hi in self.frozen:
            keep[lo:hi] = False
        return np.flatnonzero(keep)

    @property
    def scale(self) -> float:
        """The array's root mean square (computed once)."""
        if self._scale is None:
            self._scale = scale_of(self.array)
        return self._scale


class Probe:
    """L(t) = <g, f(x; θ)> for one instance: analytic gradients in the dtype under test, and a
    float64 twin of every array for the numeric side."""

    def __init__(self, inst: Instance, x: Any, y: Any, g: Any, dx: Any, grads: dict[Instance, dict[str, Any]], real_input: bool,
                 sides: KinkSides | None = None, outer: tuple[str, ...] = ()) -> None:
        self.inst, self.x, self.y, self.g = inst, x, y, g
        # in float64 the output under test is the numeric side's own f(t): a first forward
        # difference needs one forward, not two (the kinks' sides recorded by the same forward)
        self.start: Start | None = (y, sides) if sides is not None and y.dtype == np.float64 else None
        self.y_shape, self.y_dtype = y.shape, y.dtype
        self.leaves = max(1, len(inst.leaves()))
        # the numeric side moves x64 in place: an array of verify's own, contiguous (a reshape of a
        # strided view, as a transpose's output, would move a copy) and writable (a user's output
        # may be a read-only view)
        moveable = x.dtype == np.float64 and x.flags.c_contiguous and x.flags.writeable
        self.x64 = x if moveable or x.dtype.kind not in "fc" else np.array(x, dtype=np.float64, order="C")
        self.g64 = g if g.dtype == np.float64 else g.astype(np.float64)
        self.tested: dict[Instance, dict[str, Any]] = {}
        self.twins: dict[Instance, dict[str, Any]] = {}
        self.tensors: list[Tensor] = []
        if real_input:
            self.tensors.append(Tensor("x", x, self.x64, dx, None, "x"))
        # the other streams the instance reads (cross-attention's keys and values, a second named
        # input): inputs too, each with the gradient the backward left for it
        self.outer64: dict[str, Any] = {}
        for name in outer:
            arr = inst.streams.values[name]
            self.outer64[name] = arr if arr.dtype == np.float64 else arr.astype(np.float64)
            self.tensors.append(Tensor(name, arr, self.outer64[name], inst.streams.grads.get(name), None, name))
        for owner, pname, arr in inst.all_params():
            self.tested.setdefault(owner, owner.params)
            twin = self.twins.setdefault(owner, {})
            twin[pname] = arr if arr.dtype == np.float64 else arr.astype(np.float64)
            label = pname if owner is inst else f"{owner.path[len(inst.path) + 1:] if inst.path else owner.path}.{pname}"
            self.tensors.append(Tensor(label, arr, twin[pname], grads.get(owner, {}).get(pname), owner, pname))

    @classmethod
    def run(cls, inst: Instance, x: Any, rng: Any, real_input: bool, outer: tuple[str, ...] = ()) -> "Probe":
        """Forward and backward of inst at x with a random upstream gradient (a sum loss checks
        nothing for normalisations, whose outputs sum to a constant); `outer` names the streams
        it reads that are inputs of the check too."""
        sides = KinkSides()
        y, cache = forward(inst, x, watch=sides)
        g = rng.standard_normal(y.shape).astype(y.dtype, copy=False)
        grads: dict[Instance, dict[str, Any]] = {}
        inst.streams.grads.clear()
        dx = backward(inst, g, cache, grads)
        return cls(inst, x, y, g, dx, grads, real_input, sides, outer)

    def evaluate(self, watch: Any) -> Any:
        """f at the float64 arrays as they stand (moved or not)."""
        for owner, twin in self.twins.items():
            owner.params = twin
        with streams_restored(self.inst) as values:  # a network's forward overwrites its entries' outputs
            values.update(self.outer64)
            try:
                return output(self.inst, self.x64, watch)
            finally:
                for owner, tested in self.tested.items():
                    owner.params = tested

    def rounding(self, squares: float) -> float:
        """The analytic side's rounding allowance for a directional product of that root sum of squares."""
        return ROUNDING * machine_epsilon(self.y_dtype) * math.sqrt(self.leaves) * squares


def machine_epsilon(dtype: Any) -> float:
    """The spacing of the dtype's numbers at 1 (float64's for an integer dtype)."""
    return float(np.finfo(dtype).eps) if np.dtype(dtype).kind == "f" else 2.0**-52


def _shape(a: Any) -> str:
    return "x".join(map(str, np.shape(a))) if a is not None else "none"


def check(inst: Instance, what: str, method: str, error: float, tol: float, note: str = "") -> Check:
    """A Check row; exact checks pass only at zero error."""
    passed = bool(error <= tol) if method != "exact" else error == 0
    return Check(inst.path or "(network)", inst.name, inst.layer.type_name if inst.path else "network",
                 what, method, float(error), float(tol), passed, note)


def _directional(probe: Probe, chosen: list[Tensor], opts: Options, rng: Any, what: str, inst: Instance,
                 confirm: bool = True) -> Check:
    """One random direction through the chosen tensors together: analytic <∇L, u> against the numeric derivative.

    Each tensor's direction is scaled to it (an input of scale 1 and a weight of scale 0.04 move
    by the same relative amount), then weighted so that every tensor contributes about equally to
    <∇L, u>: a small error in a tensor whose share would otherwise be tiny (a bias next to a large
    weight) still shows against the tolerance.
    """
    dirs = [Direction(t.array.shape, t.scale, rng) for t in chosen]
    dirs = [_Frozen(u, t.frozen) if t.frozen else u for t, u in zip(chosen, dirs)]
    dots = [u.dot(t.grad) for t, u in zip(chosen, dirs)]
    top = max((sq for _, sq in dots), default=0.0)
    # equal shares down to 1% of the largest: a gradient that is zero up to rounding (a bias before
    # a normalisation) keeps its full step and adds nothing, rather than shrinking every other share
    floor = min([sq for _, sq in dots if sq >= 1e-2 * top] or [0.0])
    analytic, squares = 0.0, 0.0
    for u, (a, sq) in zip(dirs, dots):
        w = max(floor / sq, 1e-4) if sq >= 1e-2 * top and sq > 0 else 1.0
        u.rescale(w)
        analytic += a * w
        squares += (sq * w) ** 2
    squares = math.sqrt(squares)
    rounding = probe.rounding(squares)
    # the step: opts.step relative to each tensor's scale, never reaching a kink of the layer's own
    # input; a block's inputs to inner kinks cannot be nudged, so it starts 100 times finer (fewer
    # crossings to detect and measure again; float64 keeps the quotient's rounding far below rtol)
    h = opts.step if inst.is_leaf else opts.step / 100
    for t, u in zip(chosen, dirs):
        h = _input_step(t, inst, u.max_abs, h)
    moves: list[Move] = [(t.numeric, u) for t, u in zip(chosen, dirs)]

    def tolerance(numeric: float) -> float:
        return opts.atol + opts.rtol * abs(numeric) + rounding

    # a forward difference first, at 1e-7 of each tensor's scale: its truncation (about the step
    # times the curvature) and its rounding (about 1e-16 / step) both stay near 1e-7 of the value
    q = derivative(probe.evaluate, probe.g64, moves, h, analytic, tolerance, confirm=confirm, start=probe.start,
                   start_step=opts.step / 100)
    labels = ", ".join(t.label for t in chosen) if len(chosen) <= 4 else f"{len(chosen)} tensors"
    note = f"{sum(t.array.size for t in chosen):,} elements ({labels}), {q.note}" + _left_out(chosen)
    row = check(inst, what, "direction", abs(q.value - analytic), tolerance(q.value), note)
    row.passed = row.passed and q.decided
    row.conclusive = q.conclusive
    return row


def _left_out(chosen: list[Tensor]) -> str:
    """The note's word on the rows a numeric check left out (zero by the layer's definition)."""
    notes = [f"{t.frozen_where} ({t.frozen_why})" for t in chosen if t.frozen]
    return f"; left out: {'; '.join(notes)}, gradient zero by definition" if notes else ""


class _Frozen:
    """A direction that leaves a tensor's frozen rows where they are: their gradient is zero by the
    layer's definition, so the loss's derivative along them is not the gradient's to match."""

    def __init__(self, inner: Direction, ranges: list[tuple[int, int]]) -> None:
        self.inner, self.ranges = inner, ranges

    def rescale(self, factor: float) -> None:
        self.inner.rescale(factor)

    def max_abs(self) -> float:
        return self.inner.max_abs()

    def add_to(self, arr: Any, c: float) -> None:
        flat = arr.reshape(-1)
        kept = [flat[lo:hi].copy() for lo, hi in self.ranges]
        self.inner.add_to(arr, c)
        for (lo, hi), rows in zip(self.ranges, kept):
            flat[lo:hi] = rows

    def dot(self, g: Any) -> tuple[float, float]:
        total, squares = self.inner.dot(g)
        scale = self.inner.scale
        squares = (squares / abs(scale)) ** 2 if scale else 0.0
        flat = g.reshape(-1)
        for lo, hi in self.ranges:  # the frozen rows' share taken out again
            part = self.inner.part(lo, hi) * flat[lo:hi]
            total -= float(part.sum()) * scale
            squares -= dot(part, part)
        return total, math.sqrt(max(squares, 0.0)) * abs(scale)


def _elementwise(probe: Probe, t: Tensor, opts: Options, inst: Instance) -> Check:
    """Every element of one tensor (but its frozen rows): analytic against Richardson-extrapolated differences."""
    kept = t.kept() if t.frozen else np.arange(t.array.size)
    size = kept.size
    grad = t.grad.astype(np.float64, copy=False).reshape(-1)[kept]
    numeric, worst, conclusive = _numeric_at(probe, t, opts, inst, kept)
    diff = float(np.max(np.abs(numeric - grad))) if size else 0.0
    top = float(np.max(np.abs(numeric))) if size else 0.0
    tol = opts.atol + opts.rtol * top + probe.rounding(top * math.sqrt(size))
    note = f"{size} elements" + (f", largest numeric error estimate {worst:.1e}" if worst else "") + _left_out([t])
    row = check(inst, f"dL/d{t.label}", "elementwise", diff, tol, note)
    row.conclusive = conclusive
    if not row.passed and size:
        i = int(np.argmax(np.abs(numeric - grad)))
        _where(row, t, int(kept[i]), float(numeric[i]), float(grad[i]), f"of all {size}")
    return row


def frozen_checks(inst: Instance, tensors: list[Tensor], suffix: str) -> list[Check]:
    """The analytic gradient of every frozen row is exactly zero, as the layer defines it."""
    rows = []
    for t in tensors:
        if t.frozen:
            flat = t.grad.reshape(-1)
            err = max(float(np.max(np.abs(flat[lo:hi]))) if hi > lo else 0.0 for lo, hi in t.frozen)
            rows.append(check(inst, f"dL/d{t.frozen_where} = 0{suffix}", "exact", err, 0.0,
                              f"{t.frozen_why}: zero by definition, so left out of the numeric checks"))
    return rows


def _numeric_at(probe: Probe, t: Tensor, opts: Options, inst: Instance, indices: Any) -> tuple[Any, float, bool]:
    """(∂L/∂t_i at each flat index i, from Richardson-extrapolated differences; the largest error
    estimate; whether every quotient converged)."""
    scale = t.scale
    h = _input_step(t, inst, lambda: scale, opts.step)
    grad = t.grad.reshape(-1)
    out = []
    worst = 0.0
    conclusive = True
    for i in indices:
        u = _Unit(t.array.shape, i, scale)
        # u moves element i by `scale`: the quotient is scale·∂L/∂t_i
        q = derivative(probe.evaluate, probe.g64, [(t.numeric, u)], h, float(grad[i]) * scale,
                       lambda v: (opts.atol + opts.rtol * abs(v / scale)) * scale)
        out.append(q.value / scale)
        worst = max(worst, 0.0 if math.isnan(q.error) else q.error)
        conclusive = conclusive and q.conclusive
    return np.asarray(out, dtype=np.float64), worst, conclusive


LOCATE_ALL = 256  # a failed tensor up to this size is probed element by element to find where it is wrong
LOCATE_PROBES = 12  # else this many elements with the largest analytic values, and as many at random


def _locate(probe: Probe, t: Tensor, opts: Options, inst: Instance, rng: Any, row: Check) -> None:
    """A failed directional check of one tensor: the element where numeric and analytic differ
    most, among every element of a small tensor, else among the elements with the largest
    analytic values and as many drawn at random (each costs a numeric derivative)."""
    size = t.array.size
    grad = t.grad.astype(np.float64, copy=False).reshape(-1)
    if size <= LOCATE_ALL:
        picked, among = np.arange(size), f"of all {size}"
    else:
        top = np.argpartition(-np.abs(grad), LOCATE_PROBES)[:LOCATE_PROBES]
        picked = np.unique(np.concatenate([top, rng.choice(size, LOCATE_PROBES, replace=False)]))
        among = f"of {picked.size} probed: the {LOCATE_PROBES} largest analytic values and {LOCATE_PROBES} at random"
    if t.frozen:  # not the frozen rows: their numbers are not the gradient's to match
        picked = np.intersect1d(picked, t.kept())
        if not picked.size:
            return
    numeric, _, _ = _numeric_at(probe, t, opts, inst, picked)
    k = int(np.argmax(np.abs(numeric - grad[picked])))
    _where(row, t, int(picked[k]), float(numeric[k]), float(grad[picked[k]]), among)


def _where(row: Check, t: Tensor, flat: int, numeric: float, analytic: float, among: str) -> None:
    """Record on a failed row where the gradients differ most (an index into the tensor)."""
    row.index = [int(i) for i in np.unravel_index(flat, t.array.shape)]
    row.numeric, row.analytic = numeric, analytic
    row.note += (f"; largest difference ({among}) at {t.label}[{', '.join(map(str, row.index))}]: "
                 f"numeric {numeric:.6g}, analytic {analytic:.6g}")


class _Unit(Direction):
    """The direction of one element, times a scale."""

    def __init__(self, shape: tuple[int, ...], index: int, scale: float) -> None:
        self.size = math.prod(shape)
        self.scale = scale
        self.index = index
        self.views = self.bits = None

    def add_to(self, arr: Any, c: float) -> None:
        arr.reshape(-1)[self.index] += c * self.scale

    def dot(self, g: Any) -> tuple[float, float]:
        v = float(g.reshape(-1)[self.index]) * self.scale
        return v, abs(v)

    def max_abs(self) -> float:
        return abs(self.scale)


def gradient_checks(probe: Probe, inst: Instance, opts: Options, rng: Any, suffix: str, directions: int | None = None,
                    confirm: bool = True) -> list[Check]:
    """Input and parameter gradients against numeric derivatives.

    A layer or block gets `directions` random directions, each through its input and every
    parameter together (their cost does not grow with the number of tensors); when one fails,
    each tensor is checked on its own, to name the gradient that is wrong. Small tensors, and
    every tensor with --full, are checked element by element. confirm=False: a failure is
    decided by another check (see _leaf_in_network), so it is neither confirmed nor broken down.
    """
    tensors = probe.tensors
    checks = []
    for t in tensors:
        if t.grad is None or np.shape(t.grad) != t.array.shape:
            checks.append(check(inst, f"dL/d{t.label}{suffix}", "exact", math.inf, 0.0,
                                f"gradient shape {_shape(t.grad)}, expected {_shape(t.array)}"))
    if checks or not tensors:
        return checks
    checks = frozen_checks(inst, tensors, suffix)
    out = math.prod(probe.y_shape)
    small = all(t.array.size <= ELEMENTWISE_MAX and t.array.size * out <= ELEMENTWISE_WORK for t in tensors)
    if opts.full or (inst.is_leaf and small):
        return checks + [_relabel(_elementwise(probe, t, opts, inst), suffix) for t in tensors]
    what = "dL/d(" + ", ".join(t.label for t in tensors) + ")" if len(tensors) > 1 else f"dL/d{tensors[0].label}"
    if not inst.is_leaf and len(tensors) > 1:
        what = "dL/d(x, params)" if tensors[0].owner is None else "dL/d(params)"
    n = max(1, (directions or opts.directions) if inst.is_leaf else 1)
    for i in range(n):
        checks.append(_relabel(_directional(probe, tensors, opts, rng, what, inst, confirm), suffix, i, n))
        if not confirm and not checks[-1].passed:
            return checks
    if all(c.passed for c in checks if c.method != "exact") or not inst.is_leaf:
        return checks
    if len(tensors) == 1:
        _locate(probe, tensors[0], opts, inst, rng, next(c for c in checks if not c.passed and c.method != "exact"))
        return checks
    for t in tensors:  # name the culprit
        if t.array.size <= ELEMENTWISE_MAX and t.array.size * out <= ELEMENTWISE_WORK:
            checks.append(_relabel(_elementwise(probe, t, opts, inst), suffix))
        else:
            rows = [_relabel(_directional(probe, [t], opts, rng, f"dL/d{t.label}", inst), suffix, i, n) for i in range(n)]
            failed = [c for c in rows if not c.passed]
            if failed:
                _locate(probe, t, opts, inst, rng, failed[0])
            checks += rows
    return checks


def _relabel(c: Check, suffix: str, i: int = 0, n: int = 1) -> Check:
    if n > 1:
        c.method = f"direction {i + 1}/{n}"
    c.check += suffix
    return c


def structure_checks(inst: Instance, y: Any, suffix: str = "") -> list[Check]:
    """NumPy output shape and parameter count against the calculator's (tied copies counted at their owner)."""
    calc = tuple(inst.entry.output_shape)
    got = tuple(y.shape)
    size = sum(arr.size for owner, name, arr in inst.all_params()
               if name not in (owner.layer.shared_params() if owner.is_leaf else {}))
    shape_note = f"numpy {'x'.join(map(str, got))}, calculated {'x'.join(map(str, calc))}"
    return [
        check(inst, "output shape" + suffix, "exact", 0.0 if got == calc else 1.0, 0.0, shape_note),
        check(inst, "params" + suffix, "exact", float(abs(size - inst.entry.params)), 0.0,
              f"arrays {size:,}, calculated {inst.entry.params:,}"),
    ]


def reference_checks(inst: Instance, x: Any, probe: Probe, rng: Any, opts: Options, suffix: str) -> list[Check]:
    """A user's implementation against the catalog's, on the smooth input and on one with ties."""
    checks = []
    ref = inst.reference
    tied = np.round(x * 2) / 2 if x.dtype.kind == "f" else x  # a coarse grid: ties in every pooling window, exact zeros
    rel = max(opts.rtol, ROUNDING * machine_epsilon(x.dtype))
    params = with_streams(inst, inst.params)
    for label, inp in (("smooth", x), ("ties", tied)):
        y_user, cache_user = call(inst, "forward", inp, params)
        y_ref, cache_ref = ref.forward(inp, params)
        method = f"reference, {label}"
        if np.shape(y_user) != np.shape(y_ref):
            checks.append(check(inst, "forward = reference" + suffix, method, math.inf, 0.0, "shapes differ"))
            continue
        g = probe.g if y_ref.shape == probe.g.shape else rng.standard_normal(y_ref.shape).astype(y_ref.dtype, copy=False)
        pairs = [("forward", y_user, y_ref)]
        dx_user, grads_user = call(inst, "backward", g, params, cache_user)
        dx_ref, grads_ref = ref.backward(g, params, cache_ref)
        if dx_ref is not None:  # None: an input of token ids, which has no gradient
            pairs.append(("dL/dx", dx_user, dx_ref))
        pairs += [(f"dL/d{pname}", grads_user.get(pname), v) for pname, v in grads_ref.items()]
        for what, mine, theirs in pairs:
            if mine is None or np.shape(mine) != np.shape(theirs):
                checks.append(check(inst, f"{what} = reference{suffix}", method, math.inf, 0.0, "shape differs"))
                continue
            err = float(np.max(np.abs(mine - theirs))) if theirs.size else 0.0
            tol = opts.atol + rel * (float(np.max(np.abs(theirs))) if theirs.size else 0.0)
            checks.append(check(inst, f"{what} = reference{suffix}", method, err, tol))
    return checks


def random_input(inst: Instance, shape: tuple[int, ...], rng: Any, dtype: str) -> tuple[Any, bool]:
    """(input, real-valued?): token ids in [0, bound) when a layer reading the input takes ids, else
    standard normal values kept KINK_MARGIN away from the kinks of the layer itself."""
    given = getattr(inst.entry, "ids", None)  # the calculator's word: the input is token ids in [0, ids)
    bounds = [given] if given is not None else [b for b in (leaf.layer.input_ids() for leaf in inst.entry_leaves()) if b is not None]
    if bounds:
        needed = {i for leaf in inst.entry_leaves() for i in leaf.layer.needed_ids() if i < min(bounds)}
        return exercising(rng.integers(0, min(bounds), size=shape), sorted(needed), min(bounds), rng), False
    if inst.is_leaf and inst.layer.selects:  # distinct values, evenly spaced, in random order: no ties
        n = math.prod(shape)
        x = rng.permutation(n).reshape(shape) - (n - 1) / 2
        x *= _spacing(n)  # unit variance
        return x.astype(dtype, copy=False), True
    x = rng.standard_normal(shape)
    if inst.is_leaf and inst.layer.kinks:
        nudge(x, tuple(inst.layer.kinks), KINK_MARGIN)
    x = x.astype(dtype, copy=False)
    if inst.is_leaf and inst.layer.kinks and dtype != "float64":
        nudge(x, tuple(inst.layer.kinks), np.asarray(KINK_MARGIN, dtype=dtype))  # rounding may have moved one back
    return x, True


def exercising(ids: Any, needed: list[int], bound: int, rng: Any) -> Any:
    """Random ids with every needed id (a padding id) and one id read twice placed at random
    positions, as far as the input has room: every check exercises the padding row and the
    scatter-add of a repeated id, not only the draws that happen to contain them."""
    flat = ids.reshape(-1)
    spots = rng.permutation(flat.size)
    for k, v in enumerate(needed[: flat.size]):
        flat[spots[k]] = v
    k = min(len(needed), flat.size)
    if flat.size - k >= 2 and bound > len(needed):
        v = int(rng.integers(0, bound))
        while v in needed:
            v = int(rng.integers(0, bound))
        flat[spots[k]] = flat[spots[k + 1]] = v
    return ids


def _spacing(n: int) -> float:
    """The gap between the n distinct inputs a selecting layer gets (spread over ±√3: unit variance)."""
    return 2 * math.sqrt(3.0) / max(n, 1)


def _input_step(t: "Tensor", inst: Instance, u_max: Callable[[], float], h: float) -> float:
    """The step along the input's direction (u_max() its largest element) that keeps it on its
    side of every kink (at least KINK_MARGIN away) and, for a selecting layer, keeps every pair
    of inputs in their order."""
    if t.owner is not None or not inst.is_leaf or not (inst.layer.kinks or inst.layer.selects):
        return h
    u_max = u_max()
    if u_max <= 0:
        return h
    if inst.layer.kinks:
        h = min(h, KINK_MARGIN / (4 * u_max))
    if inst.layer.selects:  # two inputs a spacing apart, each moving by h·|u|, cannot swap
        h = min(h, _spacing(t.array.size) / (4 * u_max))
    return h


def check_instance(inst: Instance, opts: Options, rng: Any, suffix: str = "", directions: int | None = None) -> list[Check]:
    """Every check of one leaf, block or the whole network on its own (suffix marks a batch-2 copy's
    rows; directions, when given, the random directions of a layer's numeric checks)."""
    x, real = random_input(inst, tuple(inst.entry.input_shape), rng, opts.dtype)
    with streams_restored(inst):  # inside a network's pass, the network's streams stay for the checks after this one
        probe = Probe.run(inst, x, rng, real, draw_streams(inst, x, rng, opts.dtype))
        return _checks(probe, opts, rng, suffix, directions)


@contextmanager
def streams_restored(inst: Instance) -> Iterator[dict[str, Any]]:
    """The stream values of inst's tree, put back as they were when the block ends, whatever a
    forward inside it wrote there."""
    values = inst.streams.values
    kept = dict(values)
    try:
        yield values
    finally:
        values.clear()
        values.update(kept)


def draw_streams(inst: Instance, x: Any, rng: Any, dtype: str) -> tuple[str, ...]:
    """The other streams a layer or block reads (cross-attention's keys and values), drawn at
    random into its streams at x's batch; returns their names, inputs of the check too."""
    drawn = {name: rng.standard_normal((x.shape[0], *shape[1:])).astype(dtype, copy=False)
             for name, shape in getattr(inst.entry, "reads", {}).items()}
    inst.streams.values.update(drawn)
    return tuple(drawn)


def draw_inputs(root: Instance, rng: Any, dtype: str) -> tuple[str, ...]:
    """A network of streams: its other named inputs drawn into its streams (token ids below their
    bound, else standard normal values); returns the names of the real-valued ones."""
    routes = root.layer
    inputs = getattr(routes, "inputs", {})
    real = []
    for name, bound in inputs.items():
        shape = routes.shapes[name]
        if bound is not None:
            root.streams.values[name] = exercising(rng.integers(0, bound, size=shape), [], bound, rng)
        else:
            root.streams.values[name] = rng.standard_normal(shape).astype(dtype, copy=False)
            real.append(name)
    return tuple(real)


def _checks(probe: Probe, opts: Options, rng: Any, suffix: str = "", directions: int | None = None,
            confirm: bool = True) -> list[Check]:
    inst = probe.inst
    checks = structure_checks(inst, probe.y, suffix)
    if not checks[0].passed:
        return checks  # numbers on a wrong shape would only repeat the failure
    probe.y = None
    checks += gradient_checks(probe, inst, opts, rng, suffix, directions, confirm)
    if inst.is_leaf:
        for what, err, tol in _identities(inst, probe.x, rng):
            checks.append(check(inst, what + suffix, "identity", err, tol))
        if inst.reference is not None:
            checks += reference_checks(inst, probe.x, probe, rng, opts, suffix)
    return checks


def _identities(inst: Instance, x: Any, rng: Any) -> list[tuple[str, float, float]]:
    """The layer type's identities; a user's code failing inside them (they run its forward and
    backward on a small copy of the layer) is UserCodeError, as anywhere else."""
    if inst.reference is None:
        return inst.layer.identities(x, inst.params, rng)
    try:
        return inst.layer.identities(x, inst.params, rng)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise UserCodeError(inst, "forward or backward (on the identities' small copy)", exc) from exc


def rule_check(inst: Instance, outs: list[Any], dy: Any, rng: Any, opts: Options) -> Check:
    """A block's own rule: split(dy) against the numeric derivative of <dy, merge(outs)> along a
    random direction of every sequence output, on the outputs its children really produced."""
    outs64 = [o.astype(np.float64, copy=False) for o in outs]
    dy64 = dy.astype(np.float64, copy=False)
    dirs = [Direction(o.shape, scale_of(o), rng).values().reshape(o.shape) for o in outs64]
    parts = inst.layer.split(dy, outs)
    prods = [(p.astype(np.float64, copy=False) * v).reshape(-1) for p, v in zip(parts, dirs)]
    analytic = sum(float(w.sum()) for w in prods)
    squares = math.sqrt(sum(dot(w, w) for w in prods))
    h = opts.step
    plus = inst.layer.merge([o + h * v for o, v in zip(outs64, dirs)])
    minus = inst.layer.merge([o - h * v for o, v in zip(outs64, dirs)])
    numeric = dot(dy64.reshape(-1), (plus - minus).reshape(-1)) / (2 * h)
    tol = opts.atol + opts.rtol * abs(numeric) + ROUNDING * machine_epsilon(dy.dtype) * squares
    return check(inst, "split = merge's gradient", "direction", abs(numeric - analytic), tol,
                 f"on its {len(outs)} sequence outputs, central difference, step {h:.0e}")


def check_network(root: Instance, opts: Options, rng: Any, blocks: Callable[[Instance], bool],
                  leaf_directions: int | None = None) -> Iterator[tuple[Instance, list[Check]]]:
    """The network end to end, and the blocks inside it that blocks(inst) selects, from one pass.

    One forward and backward of the network gives every block its input x_b, its sequences'
    outputs, its upstream gradient dL/dy_b and the analytic gradients of its input and parameters.
    Each block is checked for what it adds to its children (checked as layers): its output shape,
    its parameter count and its merge/split rule, numerically, on its children's real outputs;
    the composition is checked by the network end to end. When that fails, every block is also
    checked whole (loss <dL/dy_b, f_b(x_b)>, at the cost of its numeric forwards alone), to show
    where the composition goes wrong. A layer or block that a block ran on some of its rows (a
    mixture's expert on its tokens) gets the same rows from a pass of its own (_routed_alone).
    Yields (instance, checks): blocks children first, then the network.
    """
    x, real = random_input(root, tuple(root.entry.input_shape), rng, opts.dtype)
    outer = draw_inputs(root, rng, opts.dtype) + draw_streams(root, x, rng, opts.dtype)
    tape: dict[Any, Any] = {leaf: None for leaf in root.leaves() if blocks(leaf)}
    sides = KinkSides()
    y, cache = forward(root, x, watch=sides, tape=tape)
    g = rng.standard_normal(y.shape).astype(y.dtype, copy=False)
    grads: dict[Instance, dict[str, Any]] = {}
    root.streams.grads.clear()
    dx = backward(root, g, cache, grads, tape)
    del cache
    network = _checks(Probe(root, x, y, g, dx, grads, real, sides, outer), opts, rng)
    whole = not all(c.passed for c in network)
    for inst in root.walk():
        if inst is root or tape.get(inst) is None or not blocks(inst):
            continue
        xb, yb, dyb, dxb = tape.pop(inst)
        outs = tape.pop(("outs", inst), None)
        if np.shape(xb) != tuple(inst.entry.input_shape):
            yield inst, _routed_alone(inst, opts, rng, whole, leaf_directions)
            continue
        b_real = getattr(inst.entry, "ids", None) is None and not any(
            leaf.layer.input_ids() is not None for leaf in inst.entry_leaves())
        if inst.is_leaf:
            yield inst, _leaf_in_network(Probe(inst, xb, yb, dyb, dxb, grads, b_real, sides), opts, rng, leaf_directions)
            continue
        if whole:
            yield inst, _checks(Probe(inst, xb, yb, dyb, dxb, grads, b_real, sides), opts, rng)
        else:
            rows = structure_checks(inst, yb)
            if rows[0].passed:
                rows.append(rule_check(inst, outs, dyb, rng, opts))
            yield inst, rows
    tape.clear()
    yield root, network


def _routed_alone(inst: Instance, opts: Options, rng: Any, whole: bool, directions: int | None) -> list[Check]:
    """The rows a pass gives a layer or block that a block ran on some of its rows (a mixture's
    expert on the tokens routed to it): the pass's arrays are not at its calculated shape, so a
    forward and backward of its own, at a random input of that shape, stand in for them. A layer
    gets every check; a block its shapes and its rule (its whole check when the network's failed)."""
    if inst.is_leaf or whole:
        return check_instance(inst, opts, rng, directions=directions if inst.is_leaf else None)
    x, _ = random_input(inst, tuple(inst.entry.input_shape), rng, opts.dtype)
    with streams_restored(inst):
        draw_streams(inst, x, rng, opts.dtype)
        y, (outs, *_) = forward(inst, x)
        rows = structure_checks(inst, y)
        if rows[0].passed:
            rows.append(rule_check(inst, outs, rng.standard_normal(y.shape).astype(y.dtype, copy=False), rng, opts))
        return rows


NUMERIC = ("direction", "elementwise")  # the methods of the rows that compare with numeric derivatives


def _leaf_in_network(probe: Probe, opts: Options, rng: Any, directions: int | None) -> list[Check]:
    """A layer checked at the input and upstream gradient the network gave it (its analytic
    gradients come from the network's backward: no pass of its own), along `directions` random
    directions (one when a batch-2 copy adds opts.directions more, on a fresh input).

    A numeric disagreement there is first measured again to a conclusion; one that stands fails
    the layer's row, whatever a fresh input says (a padding id, a repeated id, a tie the network's
    input held may be what the fresh one lacks), and the row's note says whether it also fails on
    a fresh random input. Only where the derivative does not exist at the network's input (ties in
    the input of a layer that selects, inputs exactly at a declared kink: a max pool over a ReLU's
    zeros) are the numbers meaningless; then a fresh random input, away from the layer's kinks,
    decides the numeric rows, and says why. Every other row (shapes, frozen rows, identities, the
    reference) stands as measured."""
    rows = _checks(probe, opts, rng, directions=directions, confirm=False)
    if all(c.passed for c in rows if c.method.startswith(NUMERIC)):
        return rows
    inst = probe.inst
    first = next(c for c in rows if not c.passed and c.method.startswith(NUMERIC))
    kept = [c for c in rows if not c.method.startswith(NUMERIC)]
    at = f"error {first.error:.1e} against {first.tolerance:.1e}"
    undefined = _undefined_at(inst, probe.x, opts.step)
    if not undefined:
        numeric = [c for c in gradient_checks(probe, inst, opts, rng, "", directions) if c.method.startswith(NUMERIC)]
        if all(c.passed for c in numeric):
            return kept + numeric
        if any(not c.passed and c.conclusive for c in numeric):
            fresh = check_instance(inst, opts, rng)
            again = any(not c.passed for c in fresh if c.method.startswith(NUMERIC))
            for c in numeric:
                if not c.passed:
                    c.note += ("; also fails on a fresh random input" if again
                               else "; passes on a fresh random input: the failure depends on the input")
            return kept + numeric
        undefined = "a derivative its quotients do not converge to at the steps tried (a kink nobody declared, strong curvature)"
    fresh = [c for c in check_instance(inst, opts, rng) if c.method.startswith(NUMERIC)]
    for c in fresh:
        c.note += f"; on a fresh random input (at the network's input to this layer, {undefined}: {at} there)"
    return kept + fresh


def _zeros_tied(x: Any) -> bool:
    """True when two inputs are exact zeros (a ReLU's output, the usual input of a max pool): a tie,
    found without sorting (an input with a NaN is left to the sort, which decides as before)."""
    flat = x.reshape(-1)
    return int(np.count_nonzero(flat == 0)) >= 2 and not bool(np.isnan(flat).any())


def _near_ties(x: Any, step: float) -> bool:
    """True when two inputs lie within a few numeric steps of each other (the smallest gap between sorted inputs)."""
    gaps = np.diff(np.sort(x.reshape(-1).astype(np.float64, copy=False)))
    return bool(float(np.min(gaps)) <= 4 * step * scale_of(x))


def _undefined_at(inst: Instance, x: Any, step: float) -> str:
    """Why the layer's derivative cannot be measured at input x ('' when it can, as far as its
    declared kinks and selection tell): for a selection, two inputs tied or within a few steps
    of each other (which one is picked can change within the quotient's step)."""
    if x.dtype.kind not in "fc":
        return ""
    if inst.layer.selects and x.size > 1 and (_zeros_tied(x) or _near_ties(x, step)):
        return "ties or near-ties (within the numeric step), where a selection has no derivative"
    if inst.layer.kinks and bool(np.isin(x, inst.layer.kinks).any()):
        return "inputs exactly at a kink, where there is no derivative"
    return ""
