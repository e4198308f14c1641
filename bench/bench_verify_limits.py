"""Benchmark of `layercalc verify` at the limits: a 10,000-layer LSTM on 4 steps (tiny in MACs,
40,000 Python steps a forward; its own checks run on a 9-layer copy) and a `repeat: 1000000000`
of a linear (one folded row per check for the identical copies): whole-process wall time, peak
memory and the size of the output, median of runs. Run: python bench/bench_verify_limits.py [--runs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import run_once  # noqa: E402
from verify_timing import load_line, use_this_checkout, wall_and_peak  # noqa: E402

CASES = {
    "lstm, 10,000 layers, 4 steps": "input: [4, 3]\nlayers:\n  - lstm: {hidden_size: 3, num_layers: 10000}\n",
    "linear, repeat 10^9": "input: [4]\nlayers:\n  - linear: {out_features: 4}\n    repeat: 1000000000\n",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    use_this_checkout()
    with tempfile.TemporaryDirectory() as folder:
        for label, text in CASES.items():
            config = Path(folder) / "case.yaml"
            config.write_text(text)
            args = [sys.executable, "-m", "layercalc", "verify", str(config), "--format", "tsv"]
            size = len(subprocess.run(args, capture_output=True, check=True).stdout)  # also the warm-up
            runs = [run_once(args) for _ in range(opts.runs)]
            print(f"layercalc verify ({label}): {wall_and_peak(runs)}, {size:,} bytes of tsv")
    print(load_line())


if __name__ == "__main__":
    main()
