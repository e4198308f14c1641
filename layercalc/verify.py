"""verify: run every layer's NumPy forward and backward and check them against numbers.

For each leaf, each block and the whole network (post-order, execution order):
- the NumPy output shape equals the calculator's, and the parameter arrays' size its params;
- analytic gradients (input and every parameter) against central differences of the loss
  L = <g, f(x)> with a random upstream gradient g: every element for small tensors, a random
  direction for large ones (<∇L, u> against (L(t + h·u) - L(t - h·u)) / 2h, as JAX's check_vjp
  and torch's fast gradcheck do), so the cost does not grow with tensor size;
- the layer type's own identities (for convolutions: K_conv and the flipped-kernel correlation);
- with --impl, a user's implementation against the numbers and against the reference.
Nothing here names a layer type: it all goes through the Layer methods.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .analysis import Entry, Report
from .budget import check_memory
from .execution import Chain, Instance, backward, build, forward
from .lazy import np

ELEMENTWISE_MAX = 64  # tensors up to this many elements are checked element by element...
ELEMENTWISE_WORK = 4_000_000  # ...when (elements x output size) stays below this


@dataclass
class Options:
    """How verify checks: seed, tolerances, finite-difference step, what to check."""

    seed: int = 0
    rtol: float = 1e-5
    atol: float = 1e-8
    eps: float = 1e-7  # central-difference step (relative to each tensor's scale)
    dtype: str = "float64"  # float32 runs twice as fast, with tolerances to match (see for_dtype)
    full: bool = False  # every element of every tensor, whatever its size
    only: tuple[str, ...] = ()  # layer names or paths to check (their subtrees too)
    max_memory: int | None = None  # bytes; None = half of the memory available now
    impl: Any = None  # a user's layer class, checked in place of its type's reference


FLOAT32 = {"rtol": 1e-2, "atol": 1e-4, "eps": 1e-3}  # single precision: ~7 digits, so a coarser step


def for_dtype(dtype: str, **given: Any) -> Options:
    """Options for a dtype, its default tolerances and step overridden by the values given."""
    defaults = FLOAT32 if dtype == "float32" else {}
    chosen = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    return Options(dtype=dtype, **chosen)


@dataclass
class Check:
    """One check's outcome: what was compared, how, the error found and the tolerance allowed."""

    path: str
    name: str
    type: str
    check: str  # "output shape", "params", "dL/dx", "dL/dweight", "K_conv · vec(x)", ...
    method: str  # "exact", "elementwise", "direction", "identity", "vs reference"
    error: float
    tolerance: float
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


@dataclass
class Result:
    """Every check of a verify run, and whether all passed."""

    name: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        failed = sum(not c.passed for c in self.checks)
        return {"name": self.name, "passed": self.passed, "checks": len(self.checks), "failed": failed,
                "results": [c.to_dict() for c in self.checks]}


# -- the numbers --------------------------------------------------------------------------------


def _close(numeric: float, analytic: float, opts: Options) -> tuple[float, float]:
    """(error, tolerance) of the combined test |n - a| <= atol + rtol·|n|."""
    return abs(numeric - analytic), opts.atol + opts.rtol * abs(numeric)


def _random_input(shape: tuple[int, ...], rng: Any, layer: Any, dtype: str, ids: int | None = None) -> Any:
    """Standard normal input, nudged away from the layer's kinks (ReLU's 0, ...); for an input
    of token ids (ids = their bound), random integers in [0, ids)."""
    if ids is not None:
        return rng.integers(0, ids, shape)
    x = rng.standard_normal(shape).astype(dtype)
    for kink in getattr(layer, "kinks", ()):
        near = np.abs(x - kink) < 1e-3
        x[near] += np.where(x[near] >= kink, 1e-3, -1e-3)
    return x


class _Probe:
    """L(t) = <g, f(x; θ)> for one instance, with its analytic gradients."""

    def __init__(self, inst: Instance, x: Any, rng: Any) -> None:
        self.inst, self.x = inst, x
        y, cache = forward(inst, x)
        self.y = y
        self.g = rng.standard_normal(y.shape).astype(y.dtype)  # a random upstream gradient (a sum loss checks nothing for batchnorm)
        self.grads: dict[Instance, dict[str, Any]] = {}
        self.dx = backward(inst, self.g, cache, self.grads)

    def tensors(self) -> list[tuple[str, Any, Any, Callable[[Any], None]]]:
        """(label, array, analytic gradient, setter) for the input and every parameter."""
        def set_x(v: Any) -> None:
            self.x = v

        # integer token ids have no gradient to check
        out = [] if self.inst.entry.ids is not None else [("x", self.x, self.dx, set_x)]
        for owner, pname, arr in self.inst.all_params():
            label = pname if owner is self.inst else f"{owner.path[len(self.inst.path) + 1:]}.{pname}"

            def setter(v: Any, owner: Instance = owner, pname: str = pname) -> None:
                owner.params[pname] = v

            out.append((label, arr, self.grads.get(owner, {}).get(pname), setter))
        return out

    def directional(self, moves: list[tuple[Any, Any, Callable[[Any], None]]], h: float) -> tuple[float, float]:
        """(L(t + h·u) - L(t - h·u)) / 2h for simultaneous moves (array, direction u, setter),
        and the rounding noise of that quotient: a few ulps of every term of <g, y>, over 2h."""
        outs = []
        for sign in (1.0, -1.0):
            for arr, u, setter in moves:
                setter(arr + sign * h * u)
            outs.append(forward(self.inst, self.x)[0])
        for arr, _, setter in moves:
            setter(arr)
        # subtract before summing: cancels the large common part of the two losses exactly
        quotient = float(np.sum(self.g * (outs[0] - outs[1]))) / (2 * h)
        noise = 8 * float(np.finfo(outs[0].dtype).eps) * float(np.sum(np.abs(self.g * outs[0]))) / (2 * h)
        return quotient, noise


def _scale(arr: Any) -> float:
    """A tensor's typical magnitude (its root mean square; 1 for an all-zero tensor)."""
    rms = float(np.sqrt(np.mean(arr * arr))) if arr.size else 0.0
    return rms if rms > 0 else 1.0


def _step(arr: Any, opts: Options) -> float:
    """The finite-difference step for one element of a tensor: eps times its scale (at least eps)."""
    return opts.eps * max(1.0, _scale(arr))


def _direction(arr: Any, rng: Any) -> Any:
    """A random direction scaled to the tensor, so that every tensor moves by the same relative
    amount: a weight of scale 0.04 moved as much as an input of scale 1 would cross many more
    ReLU kinks downstream, for nothing."""
    return (rng.standard_normal(arr.shape) * _scale(arr)).astype(arr.dtype)


def _directional(probe: "_Probe", moves: list[Any], analytic: float, h: float, opts: Options) -> tuple[float, float, str]:
    """(error, tolerance, note) of a directional derivative check at step h, retried at smaller steps.

    Inside a block a step can carry a ReLU input (or a max-pool tie) across its kink, which
    makes the difference quotient wrong however right the gradient is; a much smaller step
    almost never crosses one (float64 and the subtraction before summing keep the rounding
    error small even at h/10⁴). A wrong gradient fails at every step.
    """
    best = None
    for step in (h, h / 100, h / 10_000):
        numeric, noise = probe.directional(moves, step)
        err, tol = _close(numeric, analytic, opts)
        tol += noise
        if best is None or err / tol < best[0] / best[1]:
            best = (err, tol, f"step {step:.0e}")
        if err <= tol:
            break
    assert best is not None
    return best


def _gradient_checks(probe: _Probe, inst: Instance, opts: Options, rng: Any, joint: bool) -> list[Check]:
    """Input and parameter gradients against central differences."""
    checks = []
    tensors = probe.tensors()
    out_size = probe.y.size
    if joint and not opts.full:
        # blocks and networks: one random direction through the input and every parameter at once
        moves, analytic = [], 0.0
        for _, arr, grad, setter in tensors:
            u = _direction(arr, rng)
            moves.append((arr, u, setter))
            analytic += float(np.sum(grad * u))
        h = opts.eps
        err, tol, note = _directional(probe, moves, analytic, h, opts)
        has_x = any(t[0] == "x" for t in tensors)
        label = "dL/d(x, params)" if has_x and len(tensors) > 1 else "dL/dx" if has_x else "dL/d(params)"
        checks.append(_check(inst, label, "direction", err, tol, f"{len(tensors)} tensors, {note}"))
        return checks
    for label, arr, grad, setter in tensors:
        name = f"dL/d{label}"
        if grad is None or grad.shape != arr.shape:
            got = "none" if grad is None else "x".join(map(str, grad.shape))
            checks.append(_check(inst, name, "exact", math.inf, 0.0, f"gradient shape {got}, expected {'x'.join(map(str, arr.shape))}"))
            continue
        h = _step(arr, opts)
        if opts.full or (arr.size <= ELEMENTWISE_MAX and arr.size * out_size <= ELEMENTWISE_WORK):
            numeric = np.empty(arr.size)
            for i in range(arr.size):
                u = np.zeros(arr.shape, dtype=arr.dtype)
                u.flat[i] = 1.0
                numeric[i] = probe.directional([(arr, u, setter)], h)[0]
            diff = float(np.max(np.abs(numeric - grad.ravel()))) if arr.size else 0.0
            tol = opts.atol + opts.rtol * (float(np.max(np.abs(numeric))) if arr.size else 0.0)
            checks.append(_check(inst, name, "elementwise", diff, tol, f"{arr.size} elements"))
        else:
            u = _direction(arr, rng)
            err, tol, note = _directional(probe, [(arr, u, setter)], float(np.sum(grad * u)), opts.eps, opts)
            checks.append(_check(inst, name, "direction", err, tol, f"{arr.size} elements, {note}"))
    return checks


def _check(inst: Instance, what: str, method: str, error: float, tol: float, note: str = "") -> Check:
    passed = bool(error <= tol) if method != "exact" else error == 0
    return Check(inst.path, inst.name, inst.layer.type_name, what, method, float(error), float(tol), passed, note)


def _structure_checks(inst: Instance, y: Any) -> list[Check]:
    """NumPy output shape and parameter count against the calculator's."""
    calc = inst.entry.output_shape
    got = tuple(y.shape)
    # a tied parameter has its own array here (each use checked on its own) but counts at its owner
    size = sum(arr.size for owner, pname, arr in inst.all_params() if pname not in owner.layer.shared_params())
    shape_note = f"numpy {'x'.join(map(str, got))}, calculated {'x'.join(map(str, calc))}"
    return [
        _check(inst, "output shape", "exact", 0.0 if got == tuple(calc) else 1.0, 0.0, shape_note),
        _check(inst, "params", "exact", float(abs(size - inst.entry.params)), 0.0,
               f"arrays {size:,}, calculated {inst.entry.params:,}"),
    ]


def _reference_checks(inst: Instance, x: Any, probe: _Probe, rng: Any, opts: Options) -> list[Check]:
    """A user's implementation against the catalog's, on a smooth input and on one with ties."""
    checks = []
    ref = inst.reference
    tied = np.round(x * 2) / 2  # a coarse grid: ties in every pooling window, exact zeros
    for label, inp in (("smooth", x), ("ties", tied)):
        y_user, cache_user = inst.layer.forward(inp, inst.params)
        y_ref, cache_ref = ref.forward(inp, inst.params)
        g = probe.g if y_ref.shape == probe.g.shape else rng.standard_normal(y_ref.shape)
        if y_user.shape != y_ref.shape:
            checks.append(_check(inst, "forward = reference", f"reference, {label}", math.inf, 0.0, "shapes differ"))
            continue
        pairs = [("forward", y_user, y_ref)]
        dx_user, grads_user = inst.layer.backward(g, inst.params, cache_user)
        dx_ref, grads_ref = ref.backward(g, inst.params, cache_ref)
        if dx_ref is not None:  # None: an input of token ids, which has no gradient
            pairs.append(("dL/dx", dx_user, dx_ref))
        pairs += [(f"dL/d{k}", grads_user.get(k), v) for k, v in grads_ref.items()]
        for what, mine, theirs in pairs:
            if mine is None or np.shape(mine) != np.shape(theirs):
                checks.append(_check(inst, f"{what} = reference", f"reference, {label}", math.inf, 0.0, "shape differs"))
                continue
            err = float(np.max(np.abs(mine - theirs))) if theirs.size else 0.0
            tol = opts.atol + opts.rtol * (float(np.max(np.abs(theirs))) if theirs.size else 0.0)
            checks.append(_check(inst, f"{what} = reference", f"reference, {label}", err, tol))
    return checks


def _selected(inst: Instance, only: tuple[str, ...]) -> bool:
    if not only:
        return True
    return any(inst.name == o or inst.path == o or inst.path.startswith(o + ".") for o in only)


def plan(report: Report, opts: Options) -> tuple[Instance, list[Instance]]:
    """The network as one root instance, and the instances to check, in order."""
    check_memory(report, opts.max_memory)
    rng = np.random.default_rng(opts.seed)
    root = Instance(_root_entry(report), "", report.network.name, Chain())
    root.sequences = [[build(e, e.seg, e.name, rng, opts.impl, opts.dtype) for e in report.entries]]
    todo = [inst for top in root.sequences[0] for inst in top.walk() if _selected(inst, opts.only)]
    if not opts.only:
        todo.append(root)
    return root, todo


def _root_entry(report: Report) -> Entry:
    total = report.total
    return Entry(seg="", name=report.network.name, type="network", input_shape=report.network.input_shape,
                 output_shape=report.output_shape, params=total["params"], children=list(report.entries),
                 ids=report.entries[0].ids if report.entries else None)


def check_instance(inst: Instance, opts: Options, rng: Any) -> list[Check]:
    """Every check of one leaf, block or the whole network."""
    x = _random_input(inst.entry.input_shape, rng, inst.layer, opts.dtype, inst.entry.ids)
    probe = _Probe(inst, x, rng)
    checks = _structure_checks(inst, probe.y)
    if not checks[0].passed:
        return checks  # numbers on a wrong shape would only repeat the failure
    checks += _gradient_checks(probe, inst, opts, rng, joint=not inst.is_leaf)
    if inst.is_leaf:
        for what, err, tol in inst.layer.identities(x, inst.params, rng):
            checks.append(_check(inst, what, "identity", err, tol))
        if inst.reference is not None:
            checks += _reference_checks(inst, x, probe, rng, opts)
    if inst.path == "":
        for c in checks:
            c.path, c.type = "(network)", "network"
    return checks


def verify(report: Report, opts: Options | None = None, progress: Callable[[Instance, int, int], None] | None = None) -> Result:
    """Check every selected layer, block and the network; progress(inst, i, n) before each."""
    opts = opts or Options()
    _, todo = plan(report, opts)
    rng = np.random.default_rng(opts.seed + 1)
    result = Result(report.network.name)
    with np.errstate(over="ignore", under="ignore"):
        for i, inst in enumerate(todo):
            if progress:
                progress(inst, i, len(todo))
            result.checks += check_instance(inst, opts, rng)
    return result
