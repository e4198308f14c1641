"""Benchmark of `layercalc verify` at the limits: a 10,000-layer LSTM on 4 steps (tiny in MACs,
40,000 Python steps a forward; its own checks run on a 9-layer copy) and a `repeat: 1000000000`
of a linear (one folded row per check for the identical copies): whole-process wall time, peak
memory and the size of the output, median of runs. Run: python bench/bench_verify_limits.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import ROOT, run_once  # noqa: E402

CASES = {
    "lstm, 10,000 layers, 4 steps": "input: [4, 3]\nlayers:\n  - lstm: {hidden_size: 3, num_layers: 10000}\n",
    "linear, repeat 10^9": "input: [4]\nlayers:\n  - linear: {out_features: 4}\n    repeat: 1000000000\n",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as folder:
        for label, text in CASES.items():
            config = Path(folder) / "case.yaml"
            config.write_text(text)
            args = [sys.executable, "-m", "layercalc", "verify", str(config), "--format", "tsv"]
            size = len(subprocess.run(args, capture_output=True, check=True).stdout)  # also the warm-up
            runs = [run_once(args) for _ in range(opts.runs)]
            walls = sorted(w for w, _ in runs)
            print(f"layercalc verify ({label}): {statistics.median(walls):.2f} s median "
                  f"(runs: {', '.join(f'{w:.2f}' for w in walls)}), peak {max(m for _, m in runs):.0f} MiB, "
                  f"{size:,} bytes of tsv")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
