"""Benchmark of the mixture of experts: the Mixtral config's params against ResNet-50's, and verify of
a tiny MoE decoder. Prints medians (the machines are shared and noisy).

Run from /tmp: python bench/bench_moe.py [--runs N]
- `params configs/mixtral_8x7b.yaml --total` and `params configs/resnet50.yaml --total`, run in
  turn in the same loop: median CPU seconds of each whole process and their ratio (target: Mixtral
  within 1.2× of ResNet-50), and Mixtral's median peak RSS (target: under 40 MiB);
- `verify` of a 2-layer decoder whose MLPs are mixtures of 2 experts (top 1): median wall seconds
  of the whole process (target: under 5 s);
- with --mixtral, one `verify configs/mixtral_8x7b.yaml` at the default memory budget: its wall
  time and what it skipped (target: the network end to end at most; minutes on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_time import ROOT, process_seconds  # noqa: E402
from tiny_decoders import decoder, swiglu  # noqa: E402

# the MLP of each block a mixture of 2 SwiGLU experts, the top 1 routed to
TINY_MOE = decoder("tiny_moe_decoder", 64, 32, [{"moe": {"num_experts": 2, "top_k": 1, "expert": swiglu(48, 32)}}])


def peak_mib(args: list[str]) -> float:
    """Peak RSS (MiB) of one whole `python -m layercalc ARGS` process."""
    proc = subprocess.Popen([sys.executable, "-m", "layercalc", *args], cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mixtral", action="store_true", help="also verify configs/mixtral_8x7b.yaml once")
    options = parser.parse_args()
    runs = options.runs
    mixtral = ["params", "configs/mixtral_8x7b.yaml", "--total"]
    resnet = ["params", "configs/resnet50.yaml", "--total"]
    process_seconds(mixtral, "cpu")  # warm-up: the files in the page cache
    times: dict[str, list[float]] = {"mixtral": [], "resnet50": []}
    for _ in range(runs):  # in turn, so that both see the same load
        times["mixtral"].append(process_seconds(mixtral, "cpu"))
        times["resnet50"].append(process_seconds(resnet, "cpu"))
    m, r = statistics.median(times["mixtral"]), statistics.median(times["resnet50"])
    rss = statistics.median(peak_mib(mixtral) for _ in range(runs))
    print(f"params --total, median CPU of {runs} runs: mixtral_8x7b {m * 1000:.0f} ms, resnet50 {r * 1000:.0f} ms,"
          f" ratio {m / r:.2f} (target <= 1.2)")
    print(f"params configs/mixtral_8x7b.yaml --total: median peak RSS {rss:.1f} MiB (target < 40)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny_moe.yaml"
        path.write_text(TINY_MOE)
        walls = [process_seconds(["verify", str(path)]) for _ in range(max(3, runs // 2))]
    print(f"verify of a 2-layer decoder of 2-expert mixtures: median wall {statistics.median(walls):.2f} s"
          f" over {len(walls)} runs (target < 5 s)")
    if options.mixtral:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "layercalc", "verify", "configs/mixtral_8x7b.yaml", "-f", "json"],
                              cwd=ROOT, capture_output=True, text=True)
        result = json.loads(done.stdout)
        skipped = [f"{s['path']} ({s['check']})" for s in result["skipped"]]
        print(f"verify configs/mixtral_8x7b.yaml: {time.perf_counter() - start:.0f} s wall, exit {done.returncode},"
              f" {result['checks']} checks, skipped: {', '.join(skipped) or 'nothing'}")


if __name__ == "__main__":
    main()
