"""Whole-process timing of `layercalc verify` for the benches of one layer family: this checkout's
layercalc on a config written to a temporary file, wall time and peak memory of each run.

Each run is timed twice, interleaved: as is, and with OpenBLAS held to one thread. On a shared
2-core machine under load, OpenBLAS's worker threads wait for cores and turn a 0.05 ms matrix
product into several ms; the one-thread figure shows what the code itself costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import ROOT, run_once  # noqa: E402


def use_this_checkout() -> None:
    """Put this checkout's layercalc first for child processes, whatever `layercalc` is installed."""
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")


def wall_and_peak(runs: list[tuple[float, float]]) -> str:
    """'W s median (runs: a, b, ...), peak P MiB' of (wall seconds, peak RSS MiB) runs."""
    walls = sorted(w for w, _ in runs)
    return (f"{statistics.median(walls):.2f} s median (runs: {', '.join(f'{w:.2f}' for w in walls)}), "
            f"peak {max(m for _, m in runs):.0f} MiB")


def load_line() -> str:
    """The 1-minute load average against the core count: how shared the machine was."""
    return f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def interleaved(args: list[str], runs: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, peak MiB) of each run, as is and with OPENBLAS_NUM_THREADS=1 in turn, after a warm-up."""
    run_once(args)  # warm-up: file caches, bytecode
    results: dict[str, list[tuple[float, float]]] = {"as is": [], "OPENBLAS_NUM_THREADS=1": []}
    for _ in range(runs):
        results["as is"].append(run_once(args))
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        results["OPENBLAS_NUM_THREADS=1"].append(run_once(args))
        del os.environ["OPENBLAS_NUM_THREADS"]
    return results


def bench_verify(config: str, name: str, title: str, runs: int) -> None:
    """Print the interleaved medians of `layercalc verify` on the YAML text `config` (target: < 5 s)."""
    use_this_checkout()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.yaml"
        path.write_text(config)
        results = interleaved([sys.executable, "-m", "layercalc", "verify", str(path), "--format", "json"], runs)
    load = load_line()
    for label, measured in results.items():
        print(f"layercalc verify {title}, {label}: {wall_and_peak(measured)}  [target < 5 s]")
    print(load)


def main(description: str, config: str, name: str, title: str) -> None:
    """A family bench's command line (--runs N, default 5): bench_verify of its config."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    bench_verify(config, name, title, parser.parse_args().runs)
