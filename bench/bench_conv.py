"""Benchmark of the NumPy conv2d (forward + backward, float64) at ResNet-18's layer shapes.

Measured in one run, medians of repeats (the machines are shared and noisy):
- the machine's float64 GEMM throughput (np.matmul on matrices of the same sizes as the
  convolutions' GEMMs), the ceiling for an im2col convolution;
- layercalc's conv2d forward + backward (dx, dw), as GFLOP/s over 3 x 2 x MACs, and its ratio
  to the GEMM figure (target >= 70 %);
- when torch is installed, torch's float64 conv2d forward + backward on the same shapes and
  the same number of threads, and the ratio (target: layercalc no slower).
Run: python bench/bench_conv.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np

from layercalc.kernels.conv import conv2d_backward, conv2d_forward

# ResNet-18 at 224x224, batch 1: (name, C_in, H, C_out, kernel, stride, padding, occurrences)
SHAPES = [
    ("conv1 7x7/2", 3, 224, 64, 7, 2, 3, 1),
    ("3x3 64 @56", 64, 56, 64, 3, 1, 1, 4),
    ("3x3/2 64->128", 64, 56, 128, 3, 2, 1, 1),
    ("1x1/2 64->128", 64, 56, 128, 1, 2, 0, 1),
    ("3x3 128 @28", 128, 28, 128, 3, 1, 1, 3),
    ("3x3/2 128->256", 128, 28, 256, 3, 2, 1, 1),
    ("1x1/2 128->256", 128, 28, 256, 1, 2, 0, 1),
    ("3x3 256 @14", 256, 14, 256, 3, 1, 1, 3),
    ("3x3/2 256->512", 256, 14, 512, 3, 2, 1, 1),
    ("1x1/2 256->512", 256, 14, 512, 1, 2, 0, 1),
    ("3x3 512 @7", 512, 7, 512, 3, 1, 1, 3),
]


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of fn() over repeats, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}" for i in threadpool_info())
    except ImportError:
        return "threadpoolctl not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    threads = os.cpu_count() or 1
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None  # type: ignore[assignment]
    print(f"numpy {np.__version__}, BLAS: {blas_threads()}; torch: {torch.__version__ if torch else 'not installed'}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    header = f"{'layer':16} {'MMACs':>7} {'GEMM GF/s':>9} {'ours GF/s':>9} {'ours/GEMM':>9}"
    print(header + (f" {'torch GF/s':>10}" if torch else ""))
    totals = {"flops": 0.0, "gemm": 0.0, "ours": 0.0, "torch": 0.0}
    lines = []
    cases = []
    for name, c, h, co, k, s, p, times in SHAPES:
        x = rng.standard_normal((1, c, h, h))
        w = rng.standard_normal((co, c, k, k))
        y, _ = conv2d_forward(x, w, None, (s, s), ((p, p), (p, p)), (1, 1), 1)
        cases.append((name, x, w, s, p, times, rng.standard_normal(y.shape)))
    # NumPy first, torch after: torch's idle OpenMP threads spin and would slow NumPy's BLAS
    for name, x, w, s, p, times, dy in cases:
        c, co, k = x.shape[1], w.shape[0], w.shape[2]
        pads = ((p, p), (p, p))
        macs = dy.size * c * k * k
        flops = 3 * 2 * macs  # forward, dx and dw: one GEMM's worth each

        def ours() -> None:
            _, cache = conv2d_forward(x, w, None, (s, s), pads, (1, 1), 1)
            conv2d_backward(dy, cache)

        # the same three GEMMs on ready-made matrices: the ceiling for an im2col convolution
        a = rng.standard_normal((co, c * k * k))
        b = rng.standard_normal((c * k * k, dy.shape[2] * dy.shape[3]))
        g = rng.standard_normal((co, b.shape[1]))

        def gemm() -> None:
            a @ b
            g @ b.T
            a.T @ g

        t_ours, t_gemm = median_time(ours, opts.repeats), median_time(gemm, opts.repeats)
        lines.append(f"{name:16} {macs / 1e6:7.1f} {flops / t_gemm / 1e9:9.2f} {flops / t_ours / 1e9:9.2f} {t_gemm / t_ours:9.1%}")
        totals["flops"] += times * flops
        totals["gemm"] += times * t_gemm
        totals["ours"] += times * t_ours
    if torch is not None:
        for index, (name, x, w, s, p, times, dy) in enumerate(cases):
            flops = 3 * 2 * dy.size * x.shape[1] * w.shape[2] * w.shape[3]
            tx = torch.tensor(x, requires_grad=True)
            tw = torch.tensor(w, requires_grad=True)
            tdy = torch.tensor(dy)

            def theirs() -> None:
                yy = torch.nn.functional.conv2d(tx, tw, None, s, p)
                tx.grad = tw.grad = None
                yy.backward(tdy)

            t_torch = median_time(theirs, opts.repeats)
            totals["torch"] += times * t_torch
            lines[index] += f" {flops / t_torch / 1e9:10.2f}"
    print("\n".join(lines))
    f = totals["flops"]
    print(f"\nResNet-18 convolutions (weighted by occurrence), forward + backward, float64, {threads} threads:")
    print(f"  GEMM throughput        {f / totals['gemm'] / 1e9:7.2f} GFLOP/s")
    print(f"  layercalc conv2d       {f / totals['ours'] / 1e9:7.2f} GFLOP/s = {totals['gemm'] / totals['ours']:.1%} of GEMM  [target >= 70%]")
    if torch is not None:
        print(f"  torch conv2d (CPU)     {f / totals['torch'] / 1e9:7.2f} GFLOP/s; layercalc / torch speed = "
              f"{totals['torch'] / totals['ours']:.2f}x  [target >= 1.00x]")


if __name__ == "__main__":
    main()
