"""Whole-process time of a calculating command reading a Hugging Face config.json, against the same
network's shipped YAML, in one run: `params PATH/config.json --total` within 1.2× of
`params configs/llama3_8b.yaml --total`.

    python bench/bench_import.py [--runs 21] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_time import process_seconds  # noqa: E402

JSON = ["params", "tests/hf_configs/llama3_8b.json", "--total"]
YAML = ["params", "configs/llama3_8b.yaml", "--total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    given = parser.parse_args()
    json_times, yaml_times = [], []
    for _ in range(given.runs):  # interleaved pairs: load on a shared machine falls on both alike
        json_times.append(process_seconds(JSON, given.clock))
        yaml_times.append(process_seconds(YAML, given.clock))
    for label, times in (("config.json", json_times), ("llama3_8b.yaml", yaml_times)):
        print(f"{label:16s} median {statistics.median(times) * 1e3:7.1f} ms  min {min(times) * 1e3:7.1f}"
              f"  max {max(times) * 1e3:7.1f}  ({given.clock})")
    print(f"ratio (config.json / yaml, medians): {statistics.median(json_times) / statistics.median(yaml_times):.2f}")


if __name__ == "__main__":
    main()
