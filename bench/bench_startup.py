"""Start-up of the calculating path: `layercalc params configs/resnet50.yaml --total`, this tree
against a baseline tree (the starting commit), in paired runs.

CPU time (user + system of the child process) rather than wall time, as the machines are shared:
a loaded machine stretches wall time but hardly the CPU time a process spends. Each round runs the
baseline, this tree and a bare `python -c pass` one after the other; the figures are medians over
the rounds. With --instructions, valgrind's instruction count of one run of each as well (the
same on every run, loaded machine or not).

Both trees run with bytecode caching on, as an installed copy does (in a temporary cache folder,
so neither tree is written to).
Run: python bench/bench_startup.py [--base /work/base] [--runs 41] [--instructions]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["-m", "layercalc", "params", "configs/resnet50.yaml", "--total"]
ALLOWANCE_MS = 40 - 16  # the target: 40 ms for the command where a bare `python -c pass` takes 16 ms


def environment(cache: str) -> dict[str, str]:
    """The children's environment: bytecode cached in `cache`, no PYTHONPATH of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def cpu_ms(tree: Path, args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(user + system CPU ms, stdout) of one run of python args with tree first on the path."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=tree, env={**env, "PYTHONPATH": str(tree)}, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time, whatever else runs
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(f"failed in {tree}: {err.read().decode()}")
        return (usage.ru_utime + usage.ru_stime) * 1000, out.read().decode()


def instructions(tree: Path, args: list[str], env: dict[str, str]) -> int | None:
    """Instructions one run executes, counted by valgrind (None without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    proc = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, *args],
        cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    return int(found.group(1)) if found else None


def cpu_model() -> str:
    """The CPU's model name, family and model (Linux; 'AVX-512' when it has it), else the platform's processor string."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                    if ":" in line)
    except OSError:
        return platform.processor() or "unknown"
    info = {key.strip(): value.strip() for key, value in info.items()}
    wide = ", AVX-512" if "avx512f" in info.get("flags", "").split() else ""
    return f"{info.get('model name', 'unknown')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}{wide})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("/work/base"), help="the baseline tree")
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--instructions", action="store_true", help="also count instructions with valgrind")
    opts = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="layercalc-pycache-")
    try:
        report(opts.base.resolve(), opts.runs, opts.instructions, environment(cache))
    finally:
        shutil.rmtree(cache)


def report(base: Path, runs: int, count: bool, env: dict[str, str]) -> None:
    """Print the paired medians (and instruction counts) of base, this tree and a bare python."""
    trees = {"baseline": base, "this tree": ROOT}
    answers = {name: cpu_ms(tree, ARGS, env)[1] for name, tree in trees.items()}  # warm-up, caches filled
    if len(set(answers.values())) != 1:
        raise SystemExit(f"the trees answer differently: {answers}")
    times: dict[str, list[float]] = {name: [] for name in [*trees, "bare python"]}
    for _ in range(runs):
        for name, tree in trees.items():
            times[name].append(cpu_ms(tree, ARGS, env)[0])
        times["bare python"].append(cpu_ms(ROOT, ["-c", "pass"], env)[0])
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"python {sys.version.split()[0]}, {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print(f"command: python {' '.join(ARGS)}   ({runs} paired rounds, CPU ms = user + system)")
    for name, value in med.items():
        print(f"  {name:<12} {value:7.1f} ms median CPU   ({min(times[name]):.1f} min)")
    above = {name: med[name] - med["bare python"] for name in trees}
    print(f"  this tree / baseline: {med['this tree'] / med['baseline']:.2f}")
    # The target was set on a machine where a bare python starts in 16 ms: 40 ms in all is 24 ms of
    # layercalc's own on top. A bare python here costs what it costs (site's imports included), so
    # the fair test is that allowance, not the ratio, which a slower bare python flatters.
    print(f"  above bare python: this tree {above['this tree']:.1f} ms, baseline {above['baseline']:.1f} ms   "
          f"[allowance: {ALLOWANCE_MS} ms above bare python (40 ms total where bare python takes 16 ms)]: "
          f"{'within' if above['this tree'] <= ALLOWANCE_MS else 'OVER'}")
    print(f"  this tree / bare python: {med['this tree'] / med['bare python']:.2f}   "
          f"[ratio target 40 / 16 = 2.50; bare python here {med['bare python']:.1f} ms, not 16]")
    if count:
        counted = {name: instructions(tree, ARGS, env) for name, tree in trees.items()}
        counted["bare python"] = instructions(ROOT, ["-c", "pass"], env)
        if None in counted.values():
            print("  instructions: valgrind not found")
            return
        for name, value in counted.items():
            print(f"  {name:<12} {value / 1e6:7.1f} M instructions")
        print(f"  above bare python: this tree {(counted['this tree'] - counted['bare python']) / 1e6:.1f} M, "
              f"baseline {(counted['baseline'] - counted['bare python']) / 1e6:.1f} M instructions")


if __name__ == "__main__":
    main()
