"""Benchmark of `layercalc verify configs/resnet18.yaml` (batch 1, 224x224): every layer, every
block and the network end to end. Whole-process wall time and peak memory, median of runs
(target: <= 15 s on this 2-core machine). Run: python bench/bench_verify.py [--runs N] [config]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import ROOT, command, run_once  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "resnet18.yaml"))
    opts = parser.parse_args()
    args = [*command(), "verify", opts.config, "--format", "json"]
    results = [run_once(args) for _ in range(opts.runs)]
    walls = sorted(w for w, _ in results)
    print(f"layercalc verify {Path(opts.config).name}: {statistics.median(walls):.2f} s median "
          f"(runs: {', '.join(f'{w:.2f}' for w in walls)}), peak {max(m for _, m in results):.0f} MiB  [target <= 15 s]")


if __name__ == "__main__":
    main()
