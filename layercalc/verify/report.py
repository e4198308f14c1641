"""What verify is asked (Options) and what it found (Check, Skipped, Result): plain data."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Options:
    """How verify checks: seed, tolerances, finite-difference step, what to check."""

    seed: int = 0
    rtol: float = 1e-5
    atol: float = 1e-8
    step: float = 1e-5  # central-difference step, relative to each tensor's scale (float64 numerics)
    dtype: str = "float64"  # of the implementation under test; numeric gradients are always float64
    full: bool = False  # every element of every tensor, whatever its size
    only: tuple[str, ...] = ()  # layer names or paths to check (their subtrees too)
    max_memory: int | None = None  # bytes; None = half of the memory available now
    impl: Any = None  # a user's layer class, checked in place of its type's reference
    directions: int = 2  # random directions per layer check on its own input (each through the input and
    # every parameter); a layer checked at the network's input gets one, its batch-2 copy these
    batch2: bool = True  # also check every layer at batch 2 when the input's batch is 1
    dedup: bool = True  # check identical layers and blocks (type, arguments, input shape) once


def for_dtype(dtype: str, **given: Any) -> Options:
    """Options for a dtype, the defaults overridden by the values given (None = default)."""
    return Options(dtype=dtype, **{k: v for k, v in given.items() if v is not None})


@dataclass
class Check:
    """One check's outcome: what was compared, how, the error found and the tolerance allowed."""

    path: str
    name: str
    type: str
    check: str  # "output shape", "params", "dL/dx", "dL/d(x, weight, bias)", "K_conv · vec(x)", ...
    method: str  # "exact", "elementwise", "direction", "identity", "reference, smooth", "raised", ...
    error: float
    tolerance: float
    passed: bool
    note: str = ""
    # a failed numeric check of one tensor: where the gradients differ most (index into the tensor,
    # batch first), the numeric and the analytic value there; None otherwise
    index: list[int] | None = None
    numeric: float | None = None
    analytic: float | None = None
    copies: int = 1  # identical copies of a repeat this row stands for (its path a range: blocks.1-999)
    # False for a numeric check whose quotients did not converge: its failure says the numbers
    # could not decide, not that the gradient is wrong (verify's own use; not in the output)
    conclusive: bool = field(default=True, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the fields are plain already: no deep copy, unlike asdict); `copies`
        only on a row that stands for several, as in the calculator's rows."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "conclusive"}
        if self.copies == 1:
            del out["copies"]
        return out


@dataclass
class Skipped:
    """A check that did not run, and why."""

    path: str
    name: str
    type: str
    check: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the fields are plain already: no deep copy, unlike asdict)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Result:
    """Every check of a verify run, the places reported from a deduplicated check, what was skipped."""

    name: str
    checks: list[Check] = field(default_factory=list)
    deduplicated: int = 0  # rows reported for a place whose identical twin was checked
    folded: int = 0  # rows more that identical repeat copies would have: each folded row stands for several
    reduced: int = 0  # rows (run or reported) of checks made to fit the memory budget (a shorter input, a smaller copy)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list, repr=False)  # what a user's implementation raised, for --debug
    interrupted: int = 0  # layers, blocks and copies planned but not checked: the run was interrupted
    planned: int = 0  # how many were planned, when interrupted
    stopped_by: str = ""  # what interrupted it: "Ctrl-C" or "SIGTERM"

    @property
    def passed(self) -> bool:
        """True when the run finished and every check passed (an interrupted run has not passed)."""
        return not self.interrupted and all(c.passed for c in self.checks)

    def summary(self) -> str:
        """One line: checks run, reported from deduplicated places, skipped, failed."""
        failed = sum(not c.passed for c in self.checks)
        run = len(self.checks) - self.deduplicated
        reduced = (f" ({self.reduced} of all rows on a reduced input or copy, to fit the memory budget or a minute: see their notes)" if self.reduced else "")
        folded = f"; {self.folded:,} more for identical repeat copies, folded into rows ×N" if self.folded else ""
        return (f"{run} checks run, {self.deduplicated} more reported for identical layers (deduplicated{folded}), "
                f"{len(self.skipped)} skipped, {failed} failed{reduced}"
                + (f"; interrupted ({self.stopped_by or 'Ctrl-C'}): {self.interrupted} of {self.planned} layers, blocks and copies not checked"
                   if self.interrupted else ""))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        failed = sum(not c.passed for c in self.checks)
        return {"name": self.name, "passed": self.passed, "checks": len(self.checks), "failed": failed,
                "deduplicated": self.deduplicated, "folded": self.folded, "reduced": self.reduced, "interrupted": self.interrupted, "skipped": [s.to_dict() for s in self.skipped],
                "summary": self.summary(), "results": [c.to_dict() for c in self.checks]}
