"""Benchmark of `layercalc verify` on a 2-layer bidirectional LSTM (hidden 64, 32 steps of 40
features, batch 2): every check of the layer and the network end to end, whole-process wall time
and peak memory, median of runs (target: < 5 s). Run: python bench/bench_recurrent.py [--runs N]

Each run is timed twice, interleaved: as is, and with OpenBLAS held to one thread;
bench/verify_timing.py says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verify_timing  # noqa: E402

CONFIG = """name: blstm_bench
input: [32, 40]
batch: 2
layers:
  - lstm: {hidden_size: 64, num_layers: 2, bidirectional: true}
"""


def main() -> None:
    verify_timing.main(__doc__, CONFIG, "blstm_bench", "blstm (2 layers, hidden 64, T 32, batch 2)")


if __name__ == "__main__":
    main()
