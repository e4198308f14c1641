"""Benchmark of the NumPy conv2d (forward + backward, float64) at ResNet-18's conv layer shapes.

Measured in one run, batch 1, 224x224 input, medians of repeats, every shape weighted by how
many times it occurs in ResNet-18:
(a) the machine's float64 GEMM throughput: np.matmul on ready-made matrices of the same sizes as
    the convolution's three GEMMs (forward W·cols, ∇W = ∇y·colsᵀ, ∇cols = Wᵀ·∇y), the ceiling
    for an im2col convolution;
(b) layercalc's conv2d forward + backward (∇x, ∇w) as GFLOP/s, counting 3 x 2 x MACs a layer,
    and the ratio b/a (target >= 70 %);
(c) when torch is importable, torch's float64 conv2d forward + backward (autograd, the input
    requiring grad) on the same shapes with as many threads as NumPy's BLAS, and the speed
    ratio (target: layercalc no slower).

Shared machines are noisy, so each shape's NumPy and torch timings are taken close together,
in several rounds, and medians are reported. OpenBLAS's and OpenMP's worker threads keep
spinning for a while after a call and steal the cores from the other library, so the script
pauses briefly and warms up whenever it switches between NumPy and torch.
The environment is left as it is (OPENBLAS_CORETYPE, thread counts): it is only reported.

Run: python bench/bench_conv.py [--rounds R] [--repeats N]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from layercalc.kernels.conv import conv_backward, conv_forward  # noqa: E402

# ResNet-18 at 224x224, batch 1: (label, C_in, H, C_out, kernel, stride, padding, occurrences)
SHAPES = [
    ("conv1 7x7/2 3->64", 3, 224, 64, 7, 2, 3, 1),
    ("3x3 64->64 @56", 64, 56, 64, 3, 1, 1, 4),
    ("3x3/2 64->128", 64, 56, 128, 3, 2, 1, 1),
    ("1x1/2 64->128", 64, 56, 128, 1, 2, 0, 1),
    ("3x3 128->128 @28", 128, 28, 128, 3, 1, 1, 3),
    ("3x3/2 128->256", 128, 28, 256, 3, 2, 1, 1),
    ("1x1/2 128->256", 128, 28, 256, 1, 2, 0, 1),
    ("3x3 256->256 @14", 256, 14, 256, 3, 1, 1, 3),
    ("3x3/2 256->512", 256, 14, 512, 3, 2, 1, 1),
    ("1x1/2 256->512", 256, 14, 512, 1, 2, 0, 1),
    ("3x3 512->512 @7", 512, 7, 512, 3, 1, 1, 3),
]

SWITCH_PAUSE = 0.3  # seconds for the other library's worker threads to stop spinning


def timings(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of fn() over `repeats` calls, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def openblas() -> tuple[Any, str]:
    """(the OpenBLAS library NumPy loaded, via ctypes, or None; its prefix for symbol names)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None, ""
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", "")):
            if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                return lib, f"{prefix}%s{suffix}"
    return None, ""


def numpy_blas() -> tuple[int, str]:
    """(NumPy's BLAS thread count, a one-line description): threadpoolctl if installed, else OpenBLAS itself."""
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            desc = "; ".join(f"{i['internal_api']} {i.get('version', '')} {i.get('architecture', '')} x{i['num_threads']}" for i in infos)
            return int(infos[0]["num_threads"]), f"threadpoolctl: {desc}"
    except ImportError:
        pass
    lib, pattern = openblas()
    if lib is not None:
        threads = int(getattr(lib, pattern % "get_num_threads")())
        desc = f"OpenBLAS x{threads}"
        for what in ("get_config", "get_corename"):
            fn = getattr(lib, pattern % what, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                desc += f"; {what[4:]}: {fn().decode()}"
        return threads, f"threadpoolctl not installed; {desc}"
    return os.cpu_count() or 1, "threadpoolctl not installed; BLAS thread count unknown (assuming the CPU count)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over all shapes (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per shape and round (default 3)")
    opts = parser.parse_args()
    threads, blas = numpy_blas()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None  # type: ignore[assignment]
    print(f"numpy {np.__version__}; BLAS: {blas}")
    print(f"torch: {f'{torch.__version__}, {torch.get_num_threads()} threads' if torch else 'not importable'}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; CPUs: {os.cpu_count()}")

    rng = np.random.default_rng(0)
    cases = []
    for label, c, h, co, k, s, p, times in SHAPES:
        x = rng.standard_normal((1, c, h, h))
        w = rng.standard_normal((co, c, k, k))
        pads = ((p, p), (p, p))
        y, _ = conv_forward(x, w, None, (s, s), pads, (1, 1), 1)
        dy = rng.standard_normal(y.shape)
        rows, cols = c * k * k, y.shape[2] * y.shape[3]
        # the three GEMMs of an im2col conv on ready-made matrices of the same sizes
        gemm = (rng.standard_normal((co, rows)), rng.standard_normal((rows, cols)), rng.standard_normal((co, cols)))
        cases.append(dict(label=label, x=x, w=w, s=s, p=p, pads=pads, dy=dy, times=times, gemm=gemm,
                          macs=dy.size * c * k * k, t={"gemm": [], "ours": [], "torch": []}))

    for _ in range(opts.rounds):
        for case in cases:
            x, w, s, pads, dy = case["x"], case["w"], case["s"], case["pads"], case["dy"]
            a, b, g = case["gemm"]

            def gemm() -> None:
                a @ b  # forward
                g @ b.T  # ∇W
                a.T @ g  # ∇cols

            def ours() -> None:
                _, cache = conv_forward(x, w, None, (s, s), pads, (1, 1), 1)
                conv_backward(dy, cache)

            # NumPy: GEMM and ours alternate, so a slow spell of the machine hits both alike
            gemm(), ours()
            for _ in range(opts.repeats):
                case["t"]["gemm"] += timings(gemm, 1)
                case["t"]["ours"] += timings(ours, 1)
            if torch is not None:
                time.sleep(SWITCH_PAUSE)
                tx = torch.tensor(x, requires_grad=True)
                tw = torch.tensor(w, requires_grad=True)
                tdy = torch.tensor(dy)
                p = case["p"]

                def theirs() -> None:
                    tx.grad = tw.grad = None
                    torch.nn.functional.conv2d(tx, tw, None, s, p).backward(tdy)

                theirs()
                case["t"]["torch"] += timings(theirs, opts.repeats)
                time.sleep(SWITCH_PAUSE)

    head = f"{'layer':18} {'x':>2} {'MMACs':>6} {'GEMM GF/s':>10} {'ours GF/s':>10} {'ours/GEMM':>10}"
    print("\n" + head + (f" {'torch GF/s':>11} {'ours/torch':>11}" if torch else ""))
    total = {"flops": 0.0, "gemm": 0.0, "ours": 0.0, "torch": 0.0}
    for case in cases:
        flops = 3 * 2 * case["macs"]  # forward, ∇x and ∇w: one GEMM's worth each
        med = {k: statistics.median(v) for k, v in case["t"].items() if v}
        line = (f"{case['label']:18} {case['times']:>2} {case['macs'] / 1e6:6.1f} {flops / med['gemm'] / 1e9:10.2f} "
                f"{flops / med['ours'] / 1e9:10.2f} {med['gemm'] / med['ours']:10.1%}")
        if torch is not None:
            line += f" {flops / med['torch'] / 1e9:11.2f} {med['torch'] / med['ours']:10.2f}x"
        print(line)
        total["flops"] += case["times"] * flops
        for key in med:
            total[key] += case["times"] * med[key]
    f = total["flops"]
    print(f"\nResNet-18's 20 convolutions (shapes weighted by occurrence), forward + backward, float64, batch 1,"
          f" {threads} BLAS threads, medians of {opts.rounds} x {opts.repeats}:")
    print(f"  (a) NumPy GEMM throughput  {f / total['gemm'] / 1e9:7.2f} GFLOP/s")
    ratio = total["gemm"] / total["ours"]
    print(f"  (b) layercalc conv2d       {f / total['ours'] / 1e9:7.2f} GFLOP/s   b/a = {ratio:.1%}"
          f"  [target >= 70%: {'met' if ratio >= 0.70 else 'NOT met'}]")
    if torch is not None:
        speed = total["torch"] / total["ours"]
        print(f"  (c) torch conv2d (CPU)     {f / total['torch'] / 1e9:7.2f} GFLOP/s   b/c = {speed:.2f}x"
              f"  [target >= 1.00x: {'met' if speed >= 1.0 else 'NOT met'}]")
    else:
        print("  (c) torch not importable: comparison skipped")


if __name__ == "__main__":
    main()
