"""Speed and size of the pictures: the HTML report of Llama-3-8B (targets: under 0.5 s and 1 MB)
and a 64-point sweep of GPT-2's sequence length (target: under 1 s), whole process.

    python bench/bench_pictures.py [--runs 7] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_time import ROOT, process_seconds  # noqa: E402

HTML = ["summary", "configs/llama3_8b.yaml", "-f", "html"]
SWEEP = ["flops", "configs/gpt2.yaml", "--sweep", "T=16..1024:64", "-f", "tsv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    given = parser.parse_args()
    page = subprocess.run([sys.executable, "-m", "layercalc", *HTML], cwd=ROOT, check=True, capture_output=True).stdout
    print(f"summary llama3_8b -f html: {len(page):,} bytes")
    for label, args in (("summary llama3_8b -f html", HTML), ("flops gpt2 --sweep T=16..1024:64", SWEEP)):
        times = [process_seconds(args, given.clock) for _ in range(given.runs)]
        print(f"{label:34s} median {statistics.median(times) * 1e3:6.0f} ms  min {min(times) * 1e3:6.0f}"
              f"  max {max(times) * 1e3:6.0f}  ({given.clock})")


if __name__ == "__main__":
    main()
