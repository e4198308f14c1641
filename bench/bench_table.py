"""Benchmark of the table view on a big config: whole processes, `-f table` against `-f tsv`.

Prints medians (the machines are shared and noisy). Run: python bench/bench_table.py [--entries N] [--runs N]
Makes a config of N distinct entries (10,000 by default; conv/bn/relu triples whose channel counts
keep changing, and a nested block every 50 entries so the table has depth), then times
`layercalc summary big.yaml -f table` and `-f tsv` as whole processes, alternating the two so load
changes hit both alike, and prints each median and the ratio (target: table <= 1.5x tsv).
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


def big_config(n: int, folder: Path) -> Path:
    """n distinct top-level-or-nested entries (no `repeat`, so every one is a row)."""
    path = folder / f"big_{n}.yaml"
    lines = ["name: big", "input: [8, 16, 16]", "layers:"]
    i = 0
    while i < n:
        if i % 50 == 0 and i + 4 <= n:  # a block with three children: four entries
            lines += ["  - sequential:", "      layers:",
                      f"        - conv2d: {{out_channels: {8 + i % 23}, kernel_size: 3, padding: 1}}",
                      "        - batchnorm2d", "        - relu"]
            i += 4
            continue
        k = i % 3
        lines.append(f"  - conv2d: {{out_channels: {8 + i % 29}, kernel_size: 3, padding: 1}}" if k == 0
                     else "  - batchnorm2d" if k == 1 else "  - relu")
        i += 1
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--width", type=int, default=120, help="COLUMNS for the table view")
    opts = parser.parse_args()
    env = {**os.environ, "COLUMNS": str(opts.width)}
    with tempfile.TemporaryDirectory() as tmp:
        config = big_config(opts.entries, Path(tmp))
        base = [sys.executable, "-m", "layercalc", "summary", str(config), "-f"]
        times: dict[str, list[float]] = {"table": [], "tsv": []}
        for fmt in times:  # warm-up: the file cache and Python's bytecode
            wall_seconds(base + [fmt], env)
        for _ in range(opts.runs):
            for fmt in times:
                times[fmt].append(wall_seconds(base + [fmt], env))
    table, tsv = (statistics.median(times[f]) for f in ("table", "tsv"))
    print(f"layercalc summary big.yaml ({opts.entries:,} entries), {opts.runs} alternating runs, COLUMNS={opts.width}")
    for fmt in times:
        print(f"  -f {fmt:<5}  median {statistics.median(times[fmt]):.3f} s  (runs: {', '.join(f'{t:.2f}' for t in times[fmt])})")
    print(f"  ratio table/tsv: {table / tsv:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
