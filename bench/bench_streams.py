"""Benchmark of `layercalc verify` on a 2-layer tiny T5 (configs/t5_small.yaml's structure, encoder
and decoder of block 0 and one more block each, d_model 32, 4 heads of 8, MLP 64, vocabulary 64,
16 encoder and 12 decoder tokens): whole-process wall and CPU time, medians (target: < 5 s).
Run: python bench/bench_streams.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # toy_sizes: the tests shrink shipped configs the same way
from bench_verify import command, run  # noqa: E402
from toy_sizes import shrunk  # noqa: E402

SIZES = {"num_embeddings": {32128: 64}, "embedding_dim": {512: 32}, "out_features": {32128: 64, 512: 32, 2048: 64},
         "num_heads": {8: 4}, "head_dim": {64: 8}, "repeat": {5: 1}}


def tiny_t5() -> dict[str, Any]:
    """The shipped T5-small at toy sizes, two blocks a stack."""
    config = shrunk(yaml.safe_load((ROOT / "configs" / "t5_small.yaml").read_text()), SIZES)
    config["name"] = "t5_tiny"
    config["input"] = {"input_ids": [16], "decoder_input_ids": [12]}
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t5_tiny.yaml")
        Path(path).write_text(yaml.safe_dump(tiny_t5(), sort_keys=False))
        results = [run([*command(), "verify", path]) for _ in range(opts.runs)]
    walls, cpus, peaks = zip(*results)
    print(f"verify t5_tiny (2 blocks a stack), {opts.runs} runs: wall {statistics.median(walls):.2f} s median"
          f" (min {min(walls):.2f}), cpu {statistics.median(cpus):.2f} s, peak {statistics.median(peaks):.0f} MiB;"
          " target < 5 s")


if __name__ == "__main__":
    main()
