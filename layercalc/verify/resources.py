"""The machinery a verify run needs to be fast and fit in memory, kept apart from what it checks:
how many BLAS threads, the noise pool every check's random draws are views of, each check's
generator, the memory budget a plan fits its checks into, the parameter arrays a layer's batch-2
copy shares with its own check, and handing freed memory back between checks.

Nothing here decides whether a check passes. The seeds, the pool and the shared arrays do fix a
run's random numbers, so a change to them changes the errors a run prints (not its verdicts).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..analysis import Entry
from ..lazy import np
from .differences import Noise, generator
from .execution import Instance
from .memory import budget, noise_bytes, noise_elements, release_memory

if TYPE_CHECKING:  # planning sizes its tasks with Budget: a run-time import would be a cycle
    from .planning import Task

__all__ = ["Budget", "run_budget", "limit_blas_threads", "blas_settings", "noise_pool", "check_generator", "after_check",
           "release_memory", "Reuse"]

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
    """Set the BLAS thread variables blas_settings chooses for this machine's load. Only before
    NumPy is loaded (OpenBLAS reads them once), and never over the user's own setting."""
    if "numpy" in sys.modules:
        return
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    os.environ.update(blas_settings(load, os.cpu_count() or 1, os.environ))


def blas_settings(load: float, cores: int, environ: Any) -> dict[str, str]:
    """The BLAS variables to set (none where the user set a thread count): one thread when every
    core is already busy (the 1-minute load average at least the number of cores), else BLAS's
    own choice. OpenBLAS splits a product evenly over its threads, so one that waits for a busy
    core holds up the whole product. A load under the core count keeps the threads: the average
    lags a minute behind, so a command that just ended still counts in it while its core is free
    (resnet18 on 2 cores, the average at 1.0 from the runs before: 1.26 s wall on one thread,
    0.90 s on two; bench/bench_verify.py --blas)."""
    if any(v in environ for v in BLAS_THREADS) or load < cores:
        return {}
    return {v: "1" for v in BLAS_THREADS}


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


class Reuse:
    """Parameter arrays a layer's batch-2 copy shares instead of drawing its own: those of the same
    layer's check just before it, or of the same layer in the pass over the network. Only the
    network's pass lends: every check after it is a small batch-2 copy, so what is lent adds to
    no large check's peak."""

    def __init__(self, tasks: list[Task]) -> None:
        self.wanted = {t.path for t in tasks if t.batch2 and not t.reduced}
        self.kept: Instance | None = None  # the last layer checked on its own
        self.lent: dict[str, Instance] = {}  # the network pass's layers whose batch-2 copy follows

    def take(self, task: Task) -> Instance | None:
        """The task's instance on arrays already drawn, or None."""
        if task.batch2 and _same_layer(self.kept, task):
            return _twin(self.kept, task)
        if task.batch2 and _same_layer(self.lent.get(task.path), task):
            return _twin(self.lent.pop(task.path), task)
        return None

    def keep(self, task: Task, inst: Instance | None) -> None:
        """What a task's instance (None when it could not be allocated) leaves for later copies."""
        self.kept = inst if inst is not None and not task.is_network and not task.batch2 and inst.is_leaf else None
        if inst is not None and task.is_network:
            self.lent.update((leaf.path, leaf) for leaf in inst.leaves() if leaf.path in self.wanted)


def _same_layer(inst: Instance | None, task: Task) -> bool:
    """True when the task checks the instance's own layer at another batch: not a smaller copy made
    for one of the two (its parameter shapes differ, and its arguments may not suit the other's input)."""
    return inst is not None and inst.path == task.path and inst.entry.layer is task.entry.layer


def _twin(inst: Instance, task: Task) -> Instance:
    """A layer's batch-2 copy sharing its parameter arrays (same shapes: the planner kept them)."""
    twin = Instance(task.entry, task.path, task.name, inst.layer)
    twin.params, twin.reference = inst.params, inst.reference
    return twin
