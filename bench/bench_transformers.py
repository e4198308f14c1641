"""Benchmark of the transformer configs: whole-process time and peak memory, as medians.

Run from the repository root: python bench/bench_transformers.py [--runs N]
Every command runs as `python -m layercalc ...` with this checkout first on the path.
- `params configs/llama2_7b.yaml --total` against `params configs/resnet50.yaml --total`, run in
  turn (A B A B ...) so the ratio holds when the machine's speed drifts: the median of the pairwise
  ratios (target <= 1.5) and Llama's peak RSS (target < 40 MiB);
- `summary configs/gpt2.yaml` and `flops configs/gpt2.yaml --compare` (target < 0.5 s each);
- `verify` of a 2-layer Llama-style decoder: hidden 64, 4 heads, 2 kv heads, sequence 16
  (target < 5 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import cache_bytecode  # noqa: E402
from tiny_decoders import decoder, swiglu  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

cache_bytecode()  # the children this bench starts write their bytecode, as an installed copy does

DECODER = decoder("decoder_2x64", 256, 64, swiglu(172, 64))


def layercalc(*args: str) -> list[str]:
    """This checkout's layercalc as a whole process."""
    return [sys.executable, "-m", "layercalc", *args]


def run_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one whole process, from the kernel's accounting."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def paired(a: list[str], b: list[str], runs: int) -> dict[str, float]:
    """A and B in turn after a warm-up each: medians of A's wall and RSS, B's wall, and A/B pair by pair."""
    run_once(a), run_once(b)
    pairs = [(run_once(a), run_once(b)) for _ in range(runs)]
    return {
        "a_ms": statistics.median(x[0] * 1000 for x, _ in pairs),
        "b_ms": statistics.median(y[0] * 1000 for _, y in pairs),
        "ratio": statistics.median(x[0] / y[0] for x, y in pairs),
        "a_mib": statistics.median(x[1] for x, _ in pairs),
        "b_mib": statistics.median(y[1] for _, y in pairs),
    }


def single(args: list[str], runs: int) -> tuple[float, float]:
    """Median wall ms and median peak MiB over runs, after a warm-up."""
    run_once(args)
    results = [run_once(args) for _ in range(runs)]
    return statistics.median(w * 1000 for w, _ in results), statistics.median(m for _, m in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, medians of {runs} runs after a warm-up")

    p = paired(layercalc("params", "configs/llama2_7b.yaml", "--total"),
               layercalc("params", "configs/resnet50.yaml", "--total"), runs)
    print(f"params llama2_7b --total: {p['a_ms']:.0f} ms, {p['a_mib']:.1f} MiB peak RSS "
          f"(target < 40 MiB); resnet50: {p['b_ms']:.0f} ms, {p['b_mib']:.1f} MiB; "
          f"ratio llama/resnet50 (median of pairs) {p['ratio']:.2f} (target <= 1.5)")

    for args in (("summary", "configs/gpt2.yaml"), ("flops", "configs/gpt2.yaml", "--compare")):
        ms, mib = single(layercalc(*args, "-f", "table"), runs)
        print(f"{' '.join(args)}: {ms:.0f} ms, {mib:.1f} MiB (target < 500 ms)")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "decoder_2x64.yaml"
        path.write_text(DECODER)
        ms, mib = single(layercalc("verify", str(path), "-f", "tsv"), max(3, runs // 2))
        print(f"verify 2-layer decoder (hidden 64, 4 heads, 2 kv heads, seq 16): {ms / 1000:.2f} s, "
              f"{mib:.0f} MiB (target < 5 s)")


if __name__ == "__main__":
    main()
