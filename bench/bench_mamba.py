"""Benchmark of `layercalc verify` on a tiny 2-layer Mamba language model (vocabulary 64, width 32,
state 8, 32 tokens, batch 2, the head tied): every check of each layer and the network end to end,
whole-process wall time and peak memory, median of runs (target: < 5 s).
Run: python bench/bench_mamba.py [--runs N]

Each run is timed twice, interleaved: as is, and with OpenBLAS held to one thread. On a shared
2-core machine under load, OpenBLAS's worker threads wait for cores and turn a 0.05 ms matrix
product into several ms; the one-thread figure shows what the code itself costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import ROOT, run_once  # noqa: E402

CONFIG = """name: mamba_bench
input: [32]
batch: 2
layers:
  - embedding: {num_embeddings: 64, embedding_dim: 32}
    name: embeddings
  - residual:
      body:
        - rmsnorm: {eps: 1.0e-5}
          name: norm
        - mamba: {d_state: 8}
          name: mixer
    repeat: 2
    name: layers
  - rmsnorm: {eps: 1.0e-5}
    name: norm_f
  - linear: {out_features: 64, bias: false, tied_to: embeddings}
    name: lm_head
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    # this checkout's layercalc, whatever `layercalc` script is installed
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mamba_bench.yaml"
        config.write_text(CONFIG)
        args = [sys.executable, "-m", "layercalc", "verify", str(config), "--format", "json"]
        run_once(args)  # warm-up: file caches, bytecode
        results: dict[str, list[tuple[float, float]]] = {"as is": [], "OPENBLAS_NUM_THREADS=1": []}
        for _ in range(opts.runs):
            results["as is"].append(run_once(args))
            os.environ["OPENBLAS_NUM_THREADS"] = "1"
            results["OPENBLAS_NUM_THREADS=1"].append(run_once(args))
            del os.environ["OPENBLAS_NUM_THREADS"]
    load = os.getloadavg()[0]
    for label, runs in results.items():
        walls = sorted(w for w, _ in runs)
        print(f"layercalc verify tiny Mamba LM (2 layers, width 32, state 8, T 32, batch 2), {label}: "
              f"{statistics.median(walls):.2f} s median (runs: {', '.join(f'{w:.2f}' for w in walls)}), "
              f"peak {max(m for _, m in runs):.0f} MiB  [target < 5 s]")
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
