"""Whole-process time of `layercalc serve` on Llama-3-8B with a long prompt and generation.

    python bench/bench_serve.py [--runs 21] [--clock wall|cpu]

The target is under 0.3 s: decode costs summed over 1,024 positions are a closed form, so the time
is start-up plus four analyses of the config. Prints the median, minimum and maximum of --runs
runs, with `params configs/resnet50.yaml --total` beside it as the start-up floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_time import process_seconds  # noqa: E402

SERVE = ["serve", "configs/llama3_8b.yaml", "--gpu", "h100-sxm", "--prompt", "8192", "--generate", "1024"]
FLOOR = ["params", "configs/resnet50.yaml", "--total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the processes' CPU time, steadier on a loaded machine")
    given = parser.parse_args()
    runs, clock = given.runs, given.clock
    serve, floor = [], []
    for _ in range(runs):  # interleaved, so that load on a shared machine falls on both alike
        serve.append(process_seconds(SERVE, clock))
        floor.append(process_seconds(FLOOR, clock))
    for label, times in (("serve llama3_8b 8192+1024", serve), ("params resnet50 --total", floor)):
        print(f"{label:28s} median {statistics.median(times) * 1e3:7.1f} ms"
              f"  min {min(times) * 1e3:7.1f}  max {max(times) * 1e3:7.1f}")
    print(f"clock: {clock}")
    print(f"ratio (median serve / median params): {statistics.median(serve) / statistics.median(floor):.2f}")


def tensorrt_llm_comparison() -> None:
    """The roofline bound for TensorRT-LLM 0.5.0's published A100 FP16 LLaMA-7B case (batch 64, 128
    tokens in, 128 out: 3,486 output tokens/s measured), prefill included: 64·128 / (TTFT + 128·TPOT)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from layercalc import api

    plan = api.serve(str(Path(__file__).resolve().parent.parent / "configs" / "llama2_7b.yaml"), gpu="a100-80gb",
                     batch=64, prompt=128, generate=128)
    bounds = plan["bounds"]
    bound = 64 * 128 / (bounds["ttft_seconds"] + 128 * bounds["tpot_seconds"])
    print(f"LLaMA-7B on an A100-80GB, batch 64, 128+128: bound {bound:,.0f} output tokens/s; TensorRT-LLM's "
          f"published 3,486 is {3486 / bound:.0%} of it")


if __name__ == "__main__":
    main()
    tensorrt_llm_comparison()
