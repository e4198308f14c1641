"""Finite differences: random directions, kink-safe steps and Richardson-extrapolated quotients.

The loss is L(t) = <g, f(x; θ)> with a fixed random upstream gradient g; a directional check
compares the analytic <∇L, u> with the numeric derivative of L along u. The numeric side always
runs in float64, whatever the dtype under test, so that it is far more accurate than any
tolerance it is compared with:
- a central difference D(h) decides a check it agrees with; a disagreement is confirmed with
  D(h/2) and Richardson extrapolation, R = (4·D(h/2) - D(h)) / 3, whose O(h²) error cancels:
  |D(h) - D(h/2)| / 3 bounds what is left (truncation, rounding, a kink crossed) and must be
  small against the tolerance, or the step is cut and the quotient measured again: the tolerance
  itself never grows;
- every forward of the quotient watches the inputs of the layers that declare kinks (ReLU's 0,
  ...): if any element changes side between +h and -h, the quotient straddles a kink and is
  measured again with a step small enough not to reach it (found from how fast each input moved).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ..layers.numerics import fresh_uniform, unit_uniform
from ..lazy import np

CHUNK = 1 << 20  # elements per slice when a large tensor is moved or multiplied (bounded temporaries)
DENSE_MAX = 1 << 22  # directions up to this size are made from the noise pool; larger ones are random-sign bits
SAVE_MAX = 1 << 16  # tensors up to this size are saved and restored exactly after a move; larger ones are
# moved back (to within an ulp or two: a change of 1e-16 relative, far below any tolerance), which
# spares a copy of every large weight at each quotient
ACCURACY = 0.1  # a confirmed disagreement: the numeric error estimate is below this fraction of the tolerance


NOISE_MIN = 1 << 16  # the smallest noise pool drawn


class Noise:
    """Unit-RMS uniform numbers (on ±√3) drawn once for a whole verify run and handed out as
    read-only views at random offsets: the directions (each the product of two views) and the
    weights (each a scaled copy). A run draws about twice its largest tensor
    instead of every direction and weight anew (resnet18: 38 MB once, not about 600 MB). Views
    may overlap: taking a direction as the product of two of them (see Direction) keeps two
    directions uncorrelated."""

    def __init__(self, rng: Any, expected: int = 0) -> None:
        """A pool for tensors of up to `expected` elements (verify sizes it for the whole run; a
        larger request, from a caller that did not, grows it)."""
        self.rng = rng
        self.pool: Any = np.empty(0)
        self.scratch: Any = None
        if expected:
            self.take(min(expected, DENSE_MAX), rng)

    def buffer(self, n: int) -> Any:
        """The run's reused float64 buffer, at least min(n, SPAN) elements, where directions are formed."""
        if self.scratch is None or self.scratch.size < min(n, SPAN):
            self.scratch = np.empty(min(max(n, self.pool.size // 2), SPAN))
        return self.scratch

    def take(self, n: int, rng: Any) -> Any:
        """n numbers (a view: never write to it), at an offset drawn from the caller's rng; above
        DENSE_MAX, a fresh array (the pool stays within twice DENSE_MAX: 64 MB)."""
        if n > DENSE_MAX:
            return fresh_uniform(rng, n)
        if self.pool.size < 2 * n:  # grown by drawing only the new part (the draws are the cost)
            old = self.pool.size
            pool = np.empty(min(max(2 * n, 2 * old, NOISE_MIN), 2 * DENSE_MAX))
            pool[:old] = self.pool
            fresh_uniform(self.rng, pool.size - old, out=pool[old:])
            pool.flags.writeable = False
            self.pool = pool
        lo = int(rng.integers(0, self.pool.size - n + 1))
        return self.pool[lo:lo + n]


def generator(seed: Any, noise: Noise) -> Any:
    """A NumPy Generator for seed whose `unit(n)` hands out views of the run's noise."""
    return _draws_class()(np.random.PCG64(seed), noise)


_DRAWS: list[type] = []


def _draws_class() -> type:
    if not _DRAWS:  # defined on first use: NumPy is imported only when a check runs
        class Draws(np.random.Generator):  # type: ignore[misc, name-defined]
            """A Generator that also hands out views of a run's noise pool."""

            def __init__(self, bit_generator: Any, noise: Noise) -> None:
                super().__init__(bit_generator)
                self.noise = noise

            def unit(self, n: int) -> Any:
                """n unit-RMS uniform numbers, read-only."""
                return self.noise.take(n, self)

        _DRAWS.append(Draws)
    return _DRAWS[0]


SPAN = 1 << 18  # elements a pooled direction is formed at a time, in one reused buffer (2 MB: in cache)
class Direction:
    """A random direction for one tensor, times a scale kept apart: the elementwise product of two
    views of the run's noise pool at independent offsets, formed a span at a time and never
    stored, or, for huge tensors, random signs kept as bits. A product of two independent
    unit-variance uniforms has zero mean and unit variance, and two directions are uncorrelated
    whatever the error they are to expose, even where their views overlap: a number of the pool
    meets a different partner in each (a constant error e gives <e, u₁> and <e, u₂> with no
    correlation; single views would give them the overlap's). A direction costs no memory of its
    own, and a 100-million-element weight's costs its bits (12 MB)."""

    def __init__(self, shape: tuple[int, ...], scale: float, rng: Any) -> None:
        self.size = math.prod(shape)
        self.scale = scale
        self.views: Any = None
        self.bits: Any = None
        if self.size <= DENSE_MAX:
            # any zero-mean continuous direction exposes a wrong gradient
            self.views = (unit_uniform(rng, self.size), unit_uniform(rng, self.size))
            # formed in the run's buffer: one run's checks go one at a time (another run, in another
            # thread, has its own); without a run's noise, a buffer of its own
            noise = getattr(rng, "noise", None)
            self.buffer = noise.buffer(self.size) if noise is not None else np.empty(min(self.size, SPAN))
            return
        # random signs kept as bits: 1 bit an element instead of 64
        self.bits = np.frombuffer(rng.bytes((self.size + 7) // 8), dtype=np.uint8)

    def rescale(self, factor: float) -> None:
        """Multiply the direction by factor."""
        self.scale *= factor

    def part(self, lo: int, hi: int, out: Any = None) -> Any:
        """u[lo:hi] / scale as float64, into out when given (else a new array)."""
        if self.views is not None:
            first, second = self.views
            return np.multiply(first[lo:hi], second[lo:hi], out=out)
        signs = np.unpackbits(self.bits[lo // 8: (hi + 7) // 8])[: hi - lo].astype(np.float64)
        signs *= 2.0
        signs -= 1.0
        return signs

    def values(self) -> Any:
        """u as a new float64 array."""
        return self.part(0, self.size) * self.scale

    def spans(self) -> Any:
        step = SPAN if self.views is not None else CHUNK
        return ((lo, min(lo + step, self.size)) for lo in range(0, self.size, step))

    def _formed(self, lo: int, hi: int) -> Any:
        """u[lo:hi] / scale, in the reused buffer for a pooled direction (valid until the next call)."""
        return self.part(lo, hi, self.buffer[:hi - lo] if self.views is not None else None)

    def add_to(self, arr: Any, c: float) -> None:
        """arr += c·u, in place (arr contiguous, float64)."""
        flat = arr.reshape(-1)
        c *= self.scale
        for lo, hi in self.spans():
            part = self._formed(lo, hi)
            part *= c
            flat[lo:hi] += part

    def dot(self, g: Any) -> tuple[float, float]:
        """(<g, u>, sqrt(Σ (g·u)²)) in float64, whatever g's dtype."""
        flat = g.reshape(-1)
        total = squares = 0.0
        for lo, hi in self.spans():
            prod = self._formed(lo, hi)
            prod *= flat[lo:hi]
            total += float(prod.sum())
            squares += dot(prod, prod)
        return total * self.scale, math.sqrt(squares) * abs(self.scale)

    def max_abs(self) -> float:
        """max |u_i|."""
        if self.views is None:
            return abs(self.scale)
        most = max((float(np.max(np.abs(self._formed(lo, hi)))) for lo, hi in self.spans()), default=0.0)
        return most * abs(self.scale)


def dot(a: Any, b: Any) -> float:
    """Σ a_i b_i of two flat arrays (einsum: BLAS's threaded dot is several times slower on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


def scale_of(arr: Any) -> float:
    """A tensor's typical magnitude (its root mean square; 1 for an all-zero or integer tensor)."""
    if not arr.size or arr.dtype.kind not in "fc":
        return 1.0
    flat = arr.reshape(-1)
    squares = 0.0
    for lo in range(0, flat.size, CHUNK):
        part = flat[lo:lo + CHUNK]
        part = part if part.dtype == np.float64 else part.astype(np.float64)
        squares += dot(part, part)
    rms = math.sqrt(squares / flat.size)
    return rms if rms > 0 else 1.0


def nudge(x: Any, kinks: tuple[float, ...], margin: float) -> Any:
    """x with every element within margin of a kink moved to margin away from it (same side)."""
    for kink in kinks:
        near = np.abs(x - kink) < margin
        x[near] = np.where(x[near] >= kink, kink + margin, kink - margin)
    return x


def sides(x: Any, kinks: tuple[float, ...]) -> Any:
    """For each element, which interval between sorted kinks it lies in (int8; a bool for one kink)."""
    if len(kinks) == 1:
        return x > kinks[0]
    return np.searchsorted(np.asarray(sorted(kinks), dtype=np.float64), x, side="right").astype(np.int8)


class KinkWatch:
    """Watches the inputs of kinked layers over the two forwards of a central difference.

    The + forward records each kinked input (float32 is enough) and its side of every kink; the
    - forward compares sides. `crossed` says whether any element changed side; `safe` is the
    largest step (in units of h) that keeps every element on its side, from how far each moved.
    """

    def __init__(self) -> None:
        self.plus: dict[int, tuple[Any, Any]] = {}
        self.recording = True
        self.crossed = False
        self.safe = math.inf

    def __call__(self, inst: Any, x: Any) -> None:
        kinks = getattr(inst.layer, "kinks", ())
        if not kinks or x.dtype.kind not in "fc":
            return
        key = id(inst)
        if self.recording:
            self.plus[key] = (x.astype(np.float32), sides(x, kinks))
            return
        xp, sp = self.plus.pop(key)
        if xp.shape != x.shape:  # a block routed other rows to the layer (a mixture's router chose otherwise)
            self.crossed = True
            return
        if not np.array_equal(sp, sides(x, kinks)):
            self.crossed = True
        travel = np.abs(xp - x.astype(np.float32)) / 2  # how far an element moves over a step of h
        mid = (xp + x.astype(np.float32)) / 2
        gap = np.min(np.stack([np.abs(mid - kink) for kink in kinks]), axis=0)
        moving = travel > 0
        if np.any(moving):
            self.safe = min(self.safe, float(np.min(gap[moving] / travel[moving])))


class KinkSides:
    """The side of every kink each kinked layer's input lies on, recorded once during the forward
    at the unmoved arrays; called again during a moved forward, it says whether any crossed."""

    def __init__(self) -> None:
        self.at: dict[int, Any] = {}
        self.recording = True
        self.crossed = False

    def __call__(self, inst: Any, x: Any) -> None:
        kinks = getattr(inst.layer, "kinks", ())
        if not kinks or x.dtype.kind not in "fc":
            return
        if self.recording:
            self.at[id(inst)] = sides(x, kinks)
        elif id(inst) in self.at and not np.array_equal(self.at[id(inst)], sides(x, kinks)):
            self.crossed = True


Start = tuple[Any, KinkSides]  # the float64 output at the unmoved arrays, and its kinks' sides
Move = tuple[Any, Direction]  # (float64 array moved in place, its direction)


def _saved(moves: list[Move]) -> list[Any]:
    """A copy of each array small enough to keep (SAVE_MAX), to restore it exactly after its moves."""
    return [arr.copy() if arr.size <= SAVE_MAX else None for arr, _ in moves]


def _restore(moves: list[Move], saved: list[Any], at: float) -> None:
    """Each moved array back where it was: its copy, or (too large to keep one) moved back from
    `at`·u, to within an ulp."""
    for (arr, u), copy in zip(moves, saved):
        if copy is not None:
            arr[...] = copy
        else:
            u.add_to(arr, -at)


def _output(evaluate: Callable[[Any], Any], watch: Any, moves: list[Move]) -> Any:
    """f at the arrays as they stand, copied when it is a view of a moved array (a reshape), so
    that the next move does not change it."""
    y = evaluate(watch)
    return y.copy() if any(np.may_share_memory(y, arr) for arr, _ in moves) else y


def forward_difference(evaluate: Callable[[Any], Any], g: Any, moves: list[Move], h: float, start: Start) -> tuple[float, bool]:
    """((L(t + h·u) - L(t)) / h for the moves together, whether any kinked input crossed a kink):
    one forward, the unmoved output being known already."""
    y0, base = start
    saved = _saved(moves)
    for arr, u in moves:
        u.add_to(arr, h)
    base.recording, base.crossed = False, False
    y = _output(evaluate, base, moves)
    _restore(moves, saved, h)
    diff = y - y0
    del y
    return dot(g.reshape(-1), diff.reshape(-1)) / h, base.crossed


def central(evaluate: Callable[[Callable[[Any, Any], None] | None], Any], g: Any, moves: list[Move], h: float) -> tuple[float, KinkWatch]:
    """(L(t + h·u) - L(t - h·u)) / 2h for the moves together, and what the kink watch saw.

    evaluate(watch) runs the forward at the current arrays. The difference of the two outputs is
    taken before summing against g, so the large common part of the two losses cancels exactly.
    """
    saved = _saved(moves)
    watch = KinkWatch()
    for arr, u in moves:
        u.add_to(arr, h)
    y_plus = _output(evaluate, watch, moves)
    watch.recording = False
    for arr, u in moves:
        u.add_to(arr, -2 * h)
    y_minus = _output(evaluate, watch, moves)
    _restore(moves, saved, -h)
    diff = y_plus - y_minus
    del y_plus, y_minus
    return dot(g.reshape(-1), diff.reshape(-1)) / (2 * h), watch


class Quotient:
    """A numeric directional derivative: its value, the error estimate, the step and how many tries."""

    def __init__(self, value: float, error: float, step: float, tries: int, note: str, decided: bool = True) -> None:
        self.value, self.error, self.step, self.tries, self.note = value, error, step, tries, note
        self.decided = decided  # False: a first quotient that disagreed (or crossed a kink), not confirmed
        self.conclusive = True  # False: the steps tried did not converge (or all crossed a kink)


def derivative(evaluate: Callable[[Any], Any], g: Any, moves: list[Move], h: float, analytic: float,
               tolerance: Callable[[float], float], tries: int = 4, confirm: bool = True,
               start: Start | None = None, start_step: float | None = None) -> Quotient:
    """The numeric derivative along moves that decides the check against analytic.

    A central difference that agrees with the analytic value within tolerance decides at once: a
    wrong gradient agreeing by chance with an inaccurate quotient is not a risk worth two more
    forwards. A disagreement is confirmed before it is reported: the quotient at h/2 gives the
    Richardson value and its error estimate, which must be below ACCURACY of the tolerance, else
    the step is cut and all is measured again. The tolerance never changes.

    confirm=False, for a check whose failure is decided by another check anyway: a quotient
    that disagrees comes back undecided, without the forwards that would confirm it.

    start (the output at the unmoved arrays, in float64) allows a first try that costs one
    forward: a forward difference at start_step (at most h), small enough that its O(h)
    truncation is far inside any tolerance, large enough that rounding is too. Agreement
    decides; a disagreement or a kink crossed goes on to the central differences above.
    """
    if start is not None:
        small = min(h, start_step if start_step is not None else h / 100)
        d0, crossed = forward_difference(evaluate, g, moves, small, start)
        if not crossed and abs(d0 - analytic) <= tolerance(d0):
            return Quotient(d0, math.nan, small, 1, f"forward difference, step {small:.0e}")
        if not crossed and not confirm:
            return Quotient(d0, math.nan, small, 1, f"forward difference, step {small:.0e}, not confirmed", False)
    best: Quotient | None = None
    for attempt in range(1, tries + 1):
        d1, w1 = central(evaluate, g, moves, h)
        if not confirm and not w1.crossed and abs(d1 - analytic) > tolerance(d1):
            return Quotient(d1, math.nan, h, attempt, f"central difference, step {h:.0e}, not confirmed", False)
        if w1.crossed:  # a kink lies within ±h: step inside the distance to it, and measure again
            h = min(h / 10, h * w1.safe / 4) if w1.safe > 0 else h / 100
            continue
        if abs(d1 - analytic) <= tolerance(d1):
            return Quotient(d1, math.nan, h, attempt, f"central difference, step {h:.0e}")
        d2, _ = central(evaluate, g, moves, h / 2)
        value = (4 * d2 - d1) / 3
        error = abs(d1 - d2) / 3
        q = Quotient(value, error, h, attempt, f"Richardson, steps {h:.0e} and {h / 2:.0e}, error estimate {error:.1e}")
        if best is None or error < best.error:
            best = q
        if error <= ACCURACY * tolerance(value):
            return q
        h /= 10  # not converged (a tie, a kink nobody declared, strong curvature): a finer step
    if best is None:  # every try crossed a kink: measure at the last step anyway, and say so
        d1, _ = central(evaluate, g, moves, h)
        best = Quotient(d1, math.inf, h, tries, f"central difference, step {h:.0e}, a kink within every step tried")
    else:
        best.note += f", above {ACCURACY:g} of the tolerance: the numbers are not conclusive"
    best.conclusive = False
    return best
