"""Benchmark of `layercalc kconv`: whole-process wall time, median of N runs (the machines are shared and noisy).

Run: python bench/bench_kconv.py [--runs N]
- the machine formats of a 1,024 x 1,024 K_conv (`--input 32x32 --kernel 3x3 --padding 1`):
  tsv, csv, json (target: under 1 s each, as a whole process);
- the table view at 80 columns (stdout to a file, as the terminal would get it): the classroom
  5x5 (25 x 25, three column blocks), the largest table printed (10x10, 100 x 100), and 32x32
  (too large: the title and a note; it once took 30 s to draw).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from wall import wall_seconds

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("tsv 1024x1024", ["--input", "32x32", "--kernel", "3x3", "--padding", "1", "-f", "tsv"]),
    ("csv 1024x1024", ["--input", "32x32", "--kernel", "3x3", "--padding", "1", "-f", "csv"]),
    ("json 1024x1024", ["--input", "32x32", "--kernel", "3x3", "--padding", "1", "-f", "json"]),
    ("table 5x5 (25 x 25)", ["--input", "5x5", "--kernel", "3x3", "--padding", "1", "-f", "table"]),
    ("table 10x10 (100 x 100)", ["--input", "10x10", "--kernel", "3x3", "--padding", "1", "-f", "table"]),
    ("table 32x32 (too large: note)", ["--input", "32x32", "--kernel", "3x3", "-f", "table"]),
]


def run_once(args: list[str], out: Path) -> float:
    """Wall seconds of one whole process, stdout written to a file."""
    with open(out, "w") as sink:
        return wall_seconds(args, {**os.environ, "COLUMNS": "80"}, sink)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    base = [sys.executable, "-m", "layercalc", "kconv"]
    print(f"whole-process wall time, median of {runs} runs after one warm-up (python -m layercalc kconv ..., COLUMNS=80)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for label, args in CASES:
            run_once(base + args, out)
            walls = sorted(run_once(base + args, out) * 1000 for _ in range(runs))
            size = out.stat().st_size
            print(f"  {label:32s} median {statistics.median(walls):7.0f} ms   min {walls[0]:7.0f} ms   output {size:>10,} bytes"
                  f"   kconv {' '.join(args)}")


if __name__ == "__main__":
    main()
