"""Benchmark of `layercalc verify` on a tiny 2-layer Mamba language model (vocabulary 64, width 32,
state 8, 32 tokens, batch 2, the head tied): every check of each layer and the network end to end,
whole-process wall time and peak memory, median of runs (target: < 5 s).
Run: python bench/bench_mamba.py [--runs N]

Each run is timed twice, interleaved: as is, and with OpenBLAS held to one thread;
bench/verify_timing.py says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verify_timing  # noqa: E402

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
    verify_timing.main(__doc__, CONFIG, "mamba_bench", "tiny Mamba LM (2 layers, width 32, state 8, T 32, batch 2)")


if __name__ == "__main__":
    main()
