"""Speed of the training planner.

    python bench/bench_train.py [--runs 11] [--clock wall|cpu]

1. Whole process: `train configs/llama3_8b.yaml --gpu h100-sxm --gpus 8` (target under 0.3 s).
2. In process: `--search` for Llama-2-70B's config on 1,024 H100s, global batch 1,024 (target
   under 2 s), with the number of layouts evaluated and evaluated per second.
Medians of --runs runs; wall clock (the machine may be shared: read the spread too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_time import process_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLAN = ["train", "configs/llama3_8b.yaml", "--gpu", "h100-sxm", "--gpus", "8"]
SEVENTY_B = ROOT / "tests" / "hf_configs" / "llama2_70b.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="for the whole-process figure")
    given = parser.parse_args()
    runs = given.runs
    from layercalc import api
    from layercalc.analysis import analyse
    from layercalc.serving import kv_heads
    from layercalc.training import Layout, layouts, repeated_blocks

    plan = [process_seconds(PLAN, given.clock) for _ in range(runs)]
    print(f"train llama3_8b, 8 H100s (whole process, {given.clock}): median {statistics.median(plan) * 1e3:.0f} ms, "
          f"min {min(plan) * 1e3:.0f}, max {max(plan) * 1e3:.0f}")
    net = api.load(str(SEVENTY_B))
    base = Layout(1024, 1, 1, 0, False, 1, 1024, "none", False, "bf16-mixed", "adam")
    shape = analyse(net._replace(batch=1))
    evaluated = sum(1 for _ in layouts(base, kv_heads(shape), repeated_blocks(shape)))
    times, fit = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        fit = len(api.train(str(SEVENTY_B), gpu="h100-sxm", gpus=1024, global_batch=1024, search=True))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"--search llama2_70b on 1,024 H100s: median {median:.2f} s (min {min(times):.2f}, max {max(times):.2f}); "
          f"{evaluated} layouts evaluated, {fit} fit: {evaluated / median:,.0f} layouts/s")


if __name__ == "__main__":
    main()
