"""verify's memory budget: estimate what a run will hold before allocating anything."""

from __future__ import annotations

import os

from .analysis import Report
from .errors import MemoryBudgetError

# bytes of float64 per parameter and per activation element that verify holds at its peak:
# parameters, their gradients and a saved copy while perturbing; forward caches, upstream
# gradients and the perturbed forwards' outputs
BYTES_PER_PARAM = 8 * 4
BYTES_PER_ACTIVATION = 8 * 6


def memory_needed(report: Report) -> int:
    """Bytes verify will hold at its peak for this network (float64), estimated before allocating."""
    total = report.total
    return total["params"] * BYTES_PER_PARAM + (total["activation_bytes"] // report.dtype_bytes) * BYTES_PER_ACTIVATION


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), or 4 GiB where that cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def check_memory(report: Report, budget: int | None) -> None:
    """Refuse, before allocating anything, a network whose verify would not fit the budget."""
    need = memory_needed(report)
    limit = budget if budget is not None else available_memory() // 2
    if need > limit:
        raise MemoryBudgetError(
            f"verify would need about {_gib(need)} but the budget is {_gib(limit)}; "
            "check a smaller case with --batch 1 or a smaller --input (e.g. --input 3x64x64), "
            "or raise the budget with --max-memory"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
