"""Benchmark of `layercalc verify`: whole-process wall time, CPU time and peak memory, medians.

- `layercalc verify configs/resnet18.yaml` (every layer, block and the network, input and
  parameters) against `torch.autograd.gradcheck(fast_mode=True)` on ResNet-18 in float64 checking
  the input gradient alone (bench/gradcheck_resnet18.py), run in turn in the same session, with
  the ratio of each pair (target: <= 0.2); with --base, a baseline tree's verify (the starting
  commit) in the same rounds, paired with this tree's;
- `layercalc verify configs/vgg16.yaml` (targets: <= 20 s, < 2 GB peak).
- with --all-configs: every shipped config once (exit status, wall time, peak memory);
- with --blas: this tree's verify of resnet18 under each BLAS thread setting in turn (one thread,
  every core's, every core's with OpenBLAS's idle spin cut to 2^20 cycles), the rule verify's
  own choice of threads rests on.

Every child runs with bytecode caching on, as an installed copy does (children.py), its cache
filled by a warm-up run: with PYTHONDONTWRITEBYTECODE set (as some environments do), every process
would compile every module of torch and layercalc again, seconds on both sides.
With --threads 1 both sides run one thread (OpenMP and BLAS): the work each does, which a load
that makes threads wait for cores (torch's more than verify's) does not blur.
Run: python bench/bench_verify.py [--runs N] [--base /work/base] [--threads 1] [--skip-vgg] [--all-configs] [--blas]
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
from bench_startup import cpu_model  # noqa: E402
from children import environment  # noqa: E402

Run = tuple[float, float, float]  # (wall s, user + system CPU s, peak RSS MiB) of one process
ENV = {k: v for k, v in environment().items() if k != "PYTHONPATH"}  # each child gets its tree's path


def command() -> list[str]:
    """layercalc as a child runs it (from a tree's root, with that tree first on its path)."""
    return [sys.executable, "-m", "layercalc"]


def run(args: list[str], tree: Path = ROOT, extra: dict[str, str] | None = None) -> Run:
    """(wall s, user+sys CPU s, peak RSS MiB) of one whole process run from tree (this checkout
    unless given), with `extra` environment variables; its exit status must be 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tree,
                            env={**ENV, **(extra or {}), "PYTHONPATH": str(tree)})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def line(name: str, results: list[Run]) -> str:
    walls, cpus, peaks = zip(*results)
    return (f"{name}: wall {statistics.median(walls):.2f} s median (min {min(walls):.2f}), "
            f"cpu {statistics.median(cpus):.2f} s (min {min(cpus):.2f}), peak {statistics.median(peaks):.0f} MiB")


def ratios(name: str, a: list[Run], b: list[Run], target: str = "") -> str:
    """The medians of a/b, pair by pair, in wall and CPU time."""
    return (f"ratio {name}, pair by pair: wall {statistics.median(x[0] / y[0] for x, y in zip(a, b)):.2f}, "
            f"cpu {statistics.median(x[1] / y[1] for x, y in zip(a, b)):.2f} median{target}")


def all_configs() -> None:
    """Every shipped config once in each dtype: exit status, wall time, peak memory, the summary line."""
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        for dtype in ("float64", "float32"):
            start = time.perf_counter()
            proc = subprocess.Popen([*command(), "verify", str(config), "--dtype", dtype, "--format", "json"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                                    env={**ENV, "PYTHONPATH": str(ROOT)})
            _, status, usage = os.wait4(proc.pid, 0)
            summary = proc.stderr.read().decode().strip().splitlines()[-1:] if proc.stderr else []
            print(f"{config.name} {dtype}: exit {os.waitstatus_to_exitcode(status)}, {time.perf_counter() - start:.1f} s, "
                  f"peak {usage.ru_maxrss / 1024:.0f} MiB; {' '.join(summary)}", flush=True)


def resnet18(runs: int, base: Path | None) -> None:
    """This tree's verify on resnet18 against gradcheck (and the baseline tree's verify), in turn."""
    args = ["verify", "configs/resnet18.yaml", "--format", "json"]
    torch = [sys.executable, str(ROOT / "bench" / "gradcheck_resnet18.py")]
    trees = {"this tree": ROOT, **({"baseline": base} if base is not None else {})}
    for tree in trees.values():  # warm-up: the bytecode cache, file caches
        run([*command(), *args], tree)
    run(torch)
    times: dict[str, list[Run]] = {name: [] for name in [*trees, "gradcheck"]}
    for k in range(runs):
        # the trees take turns to run first: the run just after gradcheck starts on caches it emptied
        for name, tree in list(trees.items())[::1 if k % 2 == 0 else -1]:
            times[name].append(run([*command(), *args], tree))
        times["gradcheck"].append(run(torch))
    threads = f"{ENV['OMP_NUM_THREADS']} thread(s) each" if "OMP_NUM_THREADS" in ENV else "default threads"
    print(f"{cpu_model()}, {os.cpu_count()} cores; load average (1 min) at the end {os.getloadavg()[0]:.1f}; "
          f"{runs} rounds; {threads}")
    print(line("layercalc verify resnet18", times["this tree"]))
    if base is not None:
        print(line(f"baseline ({base}) verify resnet18", times["baseline"]))
    print(line("gradcheck(fast_mode) resnet18, input only", times["gradcheck"]))
    print(ratios("verify / gradcheck", times["this tree"], times["gradcheck"], "  [target <= 0.2]"))
    if base is not None:
        print(ratios("baseline verify / gradcheck", times["baseline"], times["gradcheck"]))
        print(ratios("this tree / baseline", times["this tree"], times["baseline"]))


def blas(runs: int) -> None:
    """This tree's verify of resnet18 under each BLAS thread setting, the settings taking turns in every round."""
    args = [*command(), "verify", "configs/resnet18.yaml", "--format", "json"]
    cores = str(os.cpu_count() or 1)
    settings = {
        "one thread": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        f"{cores} threads, idle spin 2^20 cycles": {"OPENBLAS_NUM_THREADS": cores, "OMP_NUM_THREADS": cores,
                                                     "OPENBLAS_THREAD_TIMEOUT": "20"},
        f"{cores} threads": {"OPENBLAS_NUM_THREADS": cores, "OMP_NUM_THREADS": cores},
    }
    run(args)  # warm-up
    times: dict[str, list[Run]] = {name: [] for name in settings}
    for _ in range(runs):
        for name, extra in settings.items():
            times[name].append(run(args, extra=extra))
    print(f"{cpu_model()}, {os.cpu_count()} cores; load average (1 min) at the end {os.getloadavg()[0]:.1f}; {runs} rounds")
    for name, results in times.items():
        print(line(f"layercalc verify resnet18, {name}", results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="rounds (even: each tree runs first as often)")
    parser.add_argument("--base", type=Path, default=None, help="a baseline tree, run in the same rounds")
    parser.add_argument("--skip-vgg", action="store_true")
    parser.add_argument("--all-configs", action="store_true")
    parser.add_argument("--blas", action="store_true", help="this tree's verify under each BLAS thread setting")
    parser.add_argument("--threads", type=int, default=None,
                        help="every child's BLAS and OpenMP threads (1: the work each side does, whatever the load)")
    opts = parser.parse_args()
    if opts.threads is not None:
        ENV.update({v: str(opts.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    if opts.all_configs:
        all_configs()
        return
    if opts.blas:
        blas(opts.runs)
        return
    resnet18(opts.runs, opts.base.resolve() if opts.base else None)
    if not opts.skip_vgg:
        vgg_args = [*command(), "verify", "configs/vgg16.yaml", "--format", "json"]
        run(vgg_args)  # warm-up
        vgg = [run(vgg_args) for _ in range(opts.runs)]
        print(line("layercalc verify vgg16", vgg) + "  [targets <= 20 s, < 2 GB]")


if __name__ == "__main__":
    main()
