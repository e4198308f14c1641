"""Whole-process time of `layercalc serve` on Llama-3-8B with a long prompt and generation.

    python bench/bench_serve.py [--runs 21] [--clock wall|cpu]

The target is under 0.3 s: decode costs summed over 1,024 positions are a closed form, so the time
is start-up plus four analyses of the config. Prints the median, minimum and maximum of --runs
runs, with `params configs/resnet50.yaml --total` beside it as the start-up floor.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVE = ["serve", "configs/llama3_8b.yaml", "--gpu", "h100-sxm", "--prompt", "8192", "--generate", "1024"]
FLOOR = ["params", "configs/resnet50.yaml", "--total"]


def once(args: list[str], clock: str) -> float:
    """Seconds of one `python -m layercalc ARGS` process: wall clock, or its CPU time (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "layercalc", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall if clock == "wall" else cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the processes' CPU time, steadier on a loaded machine")
    given = parser.parse_args()
    runs, clock = given.runs, given.clock
    serve, floor = [], []
    for _ in range(runs):  # interleaved, so that load on a shared machine falls on both alike
        serve.append(once(SERVE, clock))
        floor.append(once(FLOOR, clock))
    for label, times in (("serve llama3_8b 8192+1024", serve), ("params resnet50 --total", floor)):
        print(f"{label:28s} median {statistics.median(times) * 1e3:7.1f} ms"
              f"  min {min(times) * 1e3:7.1f}  max {max(times) * 1e3:7.1f}")
    print(f"clock: {clock}")
    print(f"ratio (median serve / median params): {statistics.median(serve) / statistics.median(floor):.2f}")


if __name__ == "__main__":
    main()
