"""Benchmark of the NumPy conv3d (forward + backward, float64) at r3d_18's conv layer shapes, at a
reduced clip, against PyTorch's CPU conv3d in the same run with the same number of threads.

r3d_18 (torchvision's video ResNet) at an 8x56x56 clip instead of its 16x112x112, batch 1, every
shape weighted by how many times it occurs in the network. For each shape, medians of repeats:
(a) layercalc's conv3d forward + backward (∇x, ∇w) through the N-d im2col kernels, as GFLOP/s
    counting 3 x 2 x MACs a layer;
(b) torch's float64 conv3d forward + backward (autograd, the input requiring grad);
and the speed ratio b/a in time (target: layercalc no slower, >= 1.00x).
The same pauses and interleaving as bench/bench_conv.py (see there) keep the two libraries'
worker threads from stealing each other's cores.

Run: python bench/bench_conv3d.py [--rounds R] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_conv import SWITCH_PAUSE, numpy_blas, timings  # noqa: E402
from layercalc.kernels.conv import conv_backward, conv_forward  # noqa: E402

# r3d_18 at an 8x56x56 clip, batch 1:
# (label, C_in, (D, H, W) in, C_out, kernel, stride, padding, occurrences)
SHAPES = [
    ("stem 3x7x7/1,2,2 3->64", 3, (8, 56, 56), 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), 1),
    ("3x3x3 64->64 @8x28", 64, (8, 28, 28), 64, (3, 3, 3), (1, 1, 1), (1, 1, 1), 4),
    ("3x3x3/2 64->128", 64, (8, 28, 28), 128, (3, 3, 3), (2, 2, 2), (1, 1, 1), 1),
    ("1x1x1/2 64->128", 64, (8, 28, 28), 128, (1, 1, 1), (2, 2, 2), (0, 0, 0), 1),
    ("3x3x3 128->128 @4x14", 128, (4, 14, 14), 128, (3, 3, 3), (1, 1, 1), (1, 1, 1), 3),
    ("3x3x3/2 128->256", 128, (4, 14, 14), 256, (3, 3, 3), (2, 2, 2), (1, 1, 1), 1),
    ("1x1x1/2 128->256", 128, (4, 14, 14), 256, (1, 1, 1), (2, 2, 2), (0, 0, 0), 1),
    ("3x3x3 256->256 @2x7", 256, (2, 7, 7), 256, (3, 3, 3), (1, 1, 1), (1, 1, 1), 3),
    ("3x3x3/2 256->512", 256, (2, 7, 7), 512, (3, 3, 3), (2, 2, 2), (1, 1, 1), 1),
    ("1x1x1/2 256->512", 256, (2, 7, 7), 512, (1, 1, 1), (2, 2, 2), (0, 0, 0), 1),
    ("3x3x3 512->512 @1x4", 512, (1, 4, 4), 512, (3, 3, 3), (1, 1, 1), (1, 1, 1), 3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over all shapes (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per shape and round (default 3)")
    opts = parser.parse_args()
    threads, blas = numpy_blas()
    import torch

    torch.set_num_threads(threads)
    print(f"numpy {np.__version__}; BLAS: {blas}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; CPUs: {os.cpu_count()}")

    rng = np.random.default_rng(0)
    cases = []
    for label, c, dhw, co, k, s, p, times in SHAPES:
        x = rng.standard_normal((1, c, *dhw))
        w = rng.standard_normal((co, c, *k))
        pads = tuple((q, q) for q in p)
        y, _ = conv_forward(x, w, None, s, pads, (1, 1, 1), 1)
        dy = rng.standard_normal(y.shape)
        cases.append(dict(label=label, x=x, w=w, s=s, p=p, pads=pads, dy=dy, times=times,
                          macs=dy.size * c * int(np.prod(k)), t={"ours": [], "torch": []}))

    for _ in range(opts.rounds):
        for case in cases:
            x, w, s, pads, dy = case["x"], case["w"], case["s"], case["pads"], case["dy"]

            def ours() -> None:
                _, cache = conv_forward(x, w, None, s, pads, (1, 1, 1), 1)
                conv_backward(dy, cache)

            case["t"]["ours"] += timings(ours, opts.repeats)
            time.sleep(SWITCH_PAUSE)
            tx = torch.tensor(x, requires_grad=True)
            tw = torch.tensor(w, requires_grad=True)
            tdy = torch.tensor(dy)
            p = case["p"]

            def theirs() -> None:
                tx.grad = tw.grad = None
                torch.nn.functional.conv3d(tx, tw, None, s, p).backward(tdy)

            case["t"]["torch"] += timings(theirs, opts.repeats)
            time.sleep(SWITCH_PAUSE)

    print(f"\n{'layer':24} {'x':>2} {'MMACs':>7} {'ours GF/s':>10} {'torch GF/s':>11} {'ours/torch':>11}")
    total = {"flops": 0.0, "ours": 0.0, "torch": 0.0}
    for case in cases:
        flops = 3 * 2 * case["macs"]  # forward, ∇x and ∇w: one GEMM's worth each
        med = {k: statistics.median(v) for k, v in case["t"].items()}
        print(f"{case['label']:24} {case['times']:>2} {case['macs'] / 1e6:7.1f} {flops / med['ours'] / 1e9:10.2f} "
              f"{flops / med['torch'] / 1e9:11.2f} {med['torch'] / med['ours']:10.2f}x")
        total["flops"] += case["times"] * flops
        for key in med:
            total[key] += case["times"] * med[key]
    f = total["flops"]
    speed = total["torch"] / total["ours"]
    print(f"\nr3d_18's 20 convolutions at an 8x56x56 clip (shapes weighted by occurrence), forward + backward,"
          f" float64, batch 1, {threads} BLAS threads, medians of {opts.rounds} x {opts.repeats}:")
    print(f"  (a) layercalc conv3d       {f / total['ours'] / 1e9:7.2f} GFLOP/s")
    print(f"  (b) torch conv3d (CPU)     {f / total['torch'] / 1e9:7.2f} GFLOP/s   a/b speed = {speed:.2f}x"
          f"  [target >= 1.00x: {'met' if speed >= 1.0 else 'NOT met'}]")


if __name__ == "__main__":
    main()
