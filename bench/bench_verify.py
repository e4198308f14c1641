"""Benchmark of `layercalc verify`: whole-process wall time, CPU time and peak memory, medians.

- `layercalc verify configs/resnet18.yaml` (every layer, block and the network, input and
  parameters) against `torch.autograd.gradcheck(fast_mode=True)` on ResNet-18 in float64 checking
  the input gradient alone (bench/gradcheck_resnet18.py), run in turn in the same session, with
  the ratio of each pair (target: <= 0.5);
- `layercalc verify configs/vgg16.yaml` (targets: <= 20 s, < 2 GB peak).
- with --all-configs: every shipped config once (exit status, wall time, peak memory).
Run: python bench/bench_verify.py [--runs N] [--skip-vgg] [--all-configs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import ROOT  # noqa: E402


def command() -> list[str]:
    """This checkout's layercalc (run from the repository root, so its package is the one imported)."""
    return [sys.executable, "-m", "layercalc"]


def run(args: list[str]) -> tuple[float, float, float]:
    """(wall s, user+sys CPU s, peak RSS MiB) of one whole process; its exit status must be 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def line(name: str, results: list[tuple[float, float, float]]) -> str:
    walls, cpus, peaks = zip(*results)
    return (f"{name}: wall {statistics.median(walls):.2f} s median (min {min(walls):.2f}), "
            f"cpu {statistics.median(cpus):.2f} s, peak {statistics.median(peaks):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-vgg", action="store_true")
    parser.add_argument("--all-configs", action="store_true")
    opts = parser.parse_args()
    if opts.all_configs:
        for config in sorted((ROOT / "configs").glob("*.yaml")):
            for dtype in ("float64", "float32"):
                start = time.perf_counter()
                proc = subprocess.Popen([*command(), "verify", str(config), "--dtype", dtype, "--format", "json"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
                _, status, usage = os.wait4(proc.pid, 0)
                summary = proc.stderr.read().decode().strip().splitlines()[-1:] if proc.stderr else []
                print(f"{config.name} {dtype}: exit {os.waitstatus_to_exitcode(status)}, {time.perf_counter() - start:.1f} s, "
                      f"peak {usage.ru_maxrss / 1024:.0f} MiB; {' '.join(summary)}", flush=True)
        return
    ours = [*command(), "verify", str(ROOT / "configs" / "resnet18.yaml"), "--format", "json"]
    torch = [sys.executable, str(ROOT / "bench" / "gradcheck_resnet18.py")]
    run(ours), run(torch)  # warm-up: file caches, imports
    a, b = [], []
    for _ in range(opts.runs):
        a.append(run(ours))
        b.append(run(torch))
    print(line("layercalc verify resnet18", a))
    print(line("gradcheck(fast_mode) resnet18, input only", b))
    print(f"ratio verify / gradcheck, pair by pair: wall {statistics.median(x[0] / y[0] for x, y in zip(a, b)):.2f}, "
          f"cpu {statistics.median(x[1] / y[1] for x, y in zip(a, b)):.2f} median  [target <= 0.5]")
    if not opts.skip_vgg:
        vgg = [run([*command(), "verify", str(ROOT / "configs" / "vgg16.yaml"), "--format", "json"]) for _ in range(opts.runs)]
        print(line("layercalc verify vgg16", vgg) + "  [targets <= 20 s, < 2 GB]")


if __name__ == "__main__":
    main()
