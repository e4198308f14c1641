"""Time of one whole `python -m layercalc ARGS` process, as the benches under bench/ measure it.

Wall clock, or the process's CPU time (user + system, from the operating system's accounting of
the finished child): on a machine shared with other work the CPU time is the steadier figure.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "bench"))
from children import cache_bytecode  # noqa: E402

cache_bytecode()  # the children this bench starts write their bytecode, as an installed copy does


def process_seconds(args: list[str], clock: str = "wall") -> float:
    """Seconds of one `python -m layercalc ARGS` run from the repository's root (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "layercalc", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall if clock == "wall" else (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
