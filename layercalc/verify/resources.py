"""The machinery a verify run needs to be fast and fit in memory, kept apart from what it checks:
how many BLAS threads, the noise pool every check's random draws are views of, each check's
generator, the memory budget a plan fits its checks into, and handing freed memory back between
checks.

Nothing here decides whether a check passes. The seeds and the pool do fix a run's random
numbers, so a change to them changes the errors a run prints (not its verdicts).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from ..analysis import Entry
from ..lazy import np
from .differences import Noise, generator
from .memory import budget, noise_bytes, noise_elements, release_memory

__all__ = ["Budget", "run_budget", "limit_blas_threads", "noise_pool", "check_generator", "after_check",
           "release_memory"]

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
NOISE_STREAM = 0x6E6F697365  # the noise pool's seed beside the run's: its own stream, apart from every check's
TRIM_MIN = 1 << 26  # after a check estimated above this (64 MiB), the freed heap goes back to the system


@dataclass(frozen=True)
class Budget:
    """Bytes a run may hold: in all, and what the noise pool holds throughout."""

    total: int
    pool: int

    @property
    def limit(self) -> int:
        """Bytes one check may hold at its peak, beside the noise pool."""
        return self.total - self.pool


def run_budget(network: Entry, given: int | None) -> Budget:
    """The budget of a run over this network: the bytes given (None: the default share of what is
    free), the pool sized by the network's largest tensor."""
    return Budget(budget(given), noise_bytes(network))


def limit_blas_threads() -> None:
    """One BLAS thread when every core is already busy (1-minute load average at least the number
    of cores): threads that wait for a core cost more than they give. Only before NumPy is
    loaded, and never over the user's own setting."""
    if "numpy" in sys.modules or any(v in os.environ for v in BLAS_THREADS):
        return
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return
    if busy:
        for v in BLAS_THREADS:
            os.environ[v] = "1"


def noise_pool(network: Entry, seed: int) -> Noise:
    """The noise every check's directions and weights are views of, drawn once, at the size the
    plan counted for the network's largest tensor."""
    return Noise(np.random.default_rng([seed, NOISE_STREAM]), noise_elements(network) // 2)


def check_generator(seed: int, index: int, noise: Noise) -> Any:
    """The generator of the index-th check of a run: its own stream, whatever ran before it."""
    return generator([seed, index], noise)


def after_check(need: int) -> None:
    """Hand the arrays a large check freed back to the system, so the next check's peak is its own."""
    if need >= TRIM_MIN:
        release_memory()
