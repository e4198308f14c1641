"""Where one `verify` run's CPU time goes, in-process, on one BLAS thread: the convolutions, the
other layers' forward and backward, the random directions (formed, dotted, added, moved back),
the identities, and verify's own work around them (planning, probes, reports, the noise pool).

Process CPU time (OPENBLAS_NUM_THREADS=1 is set before NumPy loads). Each part is timed by
wrapping the function that does it for the length of the run (the outermost wrapped call
counts: a part inside another is the outer one's); 'the rest' is the run's total minus the parts.
The first run (imports, caches) is not counted; the figures are means over the runs after it.

Run: python bench/profile_verify.py [CONFIG] [--runs N]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ["OPENBLAS_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's layercalc, installed or not

import layercalc.verify as package  # noqa: E402
from layercalc import analyse  # noqa: E402
from layercalc.verify import checks, differences, execution, for_dtype, resources, verify  # noqa: E402

PARTS: collections.Counter[str] = collections.Counter()
_DEPTH = [0]


def timed(fn: Callable[..., Any], part: Callable[..., str]) -> Callable[..., Any]:
    """fn, its CPU seconds added to PARTS[part(*args)] when no timed call encloses it."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _DEPTH[0]:
            return fn(*args, **kwargs)
        _DEPTH[0] += 1
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            PARTS[part(*args)] += time.process_time() - start
            _DEPTH[0] -= 1
    return wrapper


def instrument() -> None:
    """Wrap the functions each part is made of, where verify calls them."""
    def layer(inst: Any, method: str, *_: Any) -> str:
        kind = "convolutions" if inst.layer.type_name.startswith("conv") else "other layers"
        return f"{kind} {method}"

    execution.call = timed(execution.call, layer)
    for name in ("dot", "add_to", "max_abs"):
        setattr(differences.Direction, name, timed(getattr(differences.Direction, name), lambda *_, n=name: f"directions: {n}"))
    differences._restore = timed(differences._restore, lambda *_: "directions: moved back")
    for module, name, part in ((checks, "_identities", "identities (a small copy of each layer)"),
                               (resources, "noise_pool", "noise pool"), (package, "build", "parameters drawn"),
                               (checks, "random_input", "random inputs"), (checks, "scale_of", "tensor scales"),
                               (checks, "rule_check", "blocks' merge/split rules"), (resources, "after_check", "memory handed back")):
        setattr(module, name, timed(getattr(module, name), lambda *_, p=part: p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "resnet18.yaml"))
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    instrument()
    report, options = analyse(Path(opts.config).read_text()), for_dtype("float64")
    verify(report, options)  # imports, caches
    PARTS.clear()
    start = time.process_time()
    for _ in range(opts.runs):
        result = verify(report, options)
    total = (time.process_time() - start) / opts.runs
    print(f"verify {opts.config}: {total:.3f} s CPU a run (mean of {opts.runs}, one BLAS thread), "
          f"{len(result.checks) - result.deduplicated} checks run")
    for part, seconds in PARTS.most_common():
        print(f"  {seconds / opts.runs:6.3f} s  {100 * seconds / opts.runs / total:4.1f} %  {part}")
    rest = total - sum(PARTS.values()) / opts.runs
    print(f"  {rest:6.3f} s  {100 * rest / total:4.1f} %  the rest: planning, probes, reports, walking the network")


if __name__ == "__main__":
    main()
