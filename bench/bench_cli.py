"""Benchmark of the calculating path: whole-process time and peak memory, and scaling with size.

Prints medians (the machines are shared and noisy). Run: python bench/bench_cli.py [--runs N]
- `layercalc params configs/resnet50.yaml --total`: wall time and peak RSS of the whole process
  (targets: <= 150 ms median, <= 60 MiB), and which heavy modules the process imported;
- generated configs of 1,000 / 10,000 / 100,000 distinct entries (no `repeat`): whole-process
  time (target for 10,000: <= 1 s) and the time per entry, to show the growth is linear.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "bench"))
from children import cache_bytecode  # noqa: E402

cache_bytecode()  # the children this bench starts write their bytecode, as an installed copy does


def command() -> list[str]:
    """The installed `layercalc` script next to this interpreter, else `python -m layercalc`."""
    script = Path(sys.executable).with_name("layercalc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "layercalc"]


def run_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def measure(args: list[str], runs: int) -> tuple[float, float, float]:
    """Median wall ms, min wall ms and median peak MiB over runs (after one warm-up)."""
    run_once(args)
    results = [run_once(args) for _ in range(runs)]
    walls = [w * 1000 for w, _ in results]
    return statistics.median(walls), min(walls), statistics.median(m for _, m in results)


def generated_config(n: int, folder: Path) -> Path:
    """A config of n distinct entries: conv/bn/relu triples whose channel counts keep changing."""
    path = folder / f"gen_{n}.yaml"
    lines = ["name: generated", "input: [8, 16, 16]", "layers:"]
    kinds = 3
    for i in range(n):
        k = i % kinds
        if k == 0:
            lines.append(f"  - conv2d: {{out_channels: {8 + (i // kinds) % 23}, kernel_size: 3, padding: 1}}")
        elif k == 1:
            lines.append("  - batchnorm2d")
        else:
            lines.append("  - relu")
    path.write_text("\n".join(lines) + "\n")
    return path


def imported_modules() -> str:
    """Which heavy modules the --total path imports (it should import neither numpy nor rich)."""
    probe = (
        "import sys\nfrom layercalc.launch import main\n"
        "try:\n    main(['params', sys.argv[1], '--total'])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(m for m in ('numpy', 'rich', 'pydantic', 'torch') if m in sys.modules) or 'none', file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "configs" / "resnet50.yaml")], capture_output=True, text=True
    )
    return out.stderr.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    opts = parser.parse_args()
    base = command()
    resnet50 = str(ROOT / "configs" / "resnet50.yaml")

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, command: {' '.join(base)}")
    py_med, _, py_mem = measure([sys.executable, "-c", "pass"], opts.runs)
    print(f"bare python start-up:                       {py_med:7.1f} ms median   {py_mem:5.1f} MiB")
    med, low, mem = measure([*base, "params", resnet50, "--total"], opts.runs)
    print(f"layercalc params resnet50.yaml --total:     {med:7.1f} ms median ({low:.1f} min)   {mem:5.1f} MiB peak"
          f"   [targets: <= 150 ms, <= 60 MiB]")
    print(f"heavy modules imported on that path:        {imported_modules()}")

    folder = Path(tempfile.mkdtemp(prefix="layercalc-bench-"))
    try:
        per_entry = []
        for n in (1_000, 10_000, 100_000):
            path = generated_config(n, folder)
            runs = max(3, opts.runs // (1 if n < 10_000 else 3 if n < 100_000 else 7))
            med, low, mem = measure([*base, "params", str(path), "--total"], runs)
            per_entry.append((n, med))
            print(f"generated config, {n:>7,} entries:           {med:7.1f} ms median   {mem:5.1f} MiB peak"
                  f"   {(med - py_med) / n * 1000:6.2f} us/entry above start-up")
        (n1, t1), (n2, t2) = per_entry[1], per_entry[2]
        print(f"growth 10k -> 100k entries: x{t2 / t1:.1f} time for x{n2 // n1} entries (linear = x10)")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
