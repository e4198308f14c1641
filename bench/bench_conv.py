"""Benchmark of the NumPy conv kernels (forward + backward) at ResNet-18's or r3d_18's conv shapes,
against the same GEMMs and against PyTorch's CPU conv, float64 and float32, in one run.

For every conv shape of the network (batch 1 unless --batch; ResNet-18 at 224x224, r3d_18 at an
8x56x56 clip), each weighted by how many times it occurs:
(a) GEMM: np.matmul on ready-made matrices of the sizes of an im2col conv's three products
    (forward W·cols, ∇W = ∇y·colsᵀ, ∇cols = Wᵀ·∇y), each in the fastest of its eight
    formulations here: C = A·B or Cᵀ = Bᵀ·Aᵀ, each operand stored as itself or as its transpose
    (a transposed view, which BLAS reads through its trans flag). The eight include every
    formulation the kernels use, so no kernel beats the ceiling by orientation alone; the fastest
    is picked once per product before timing, by the median of 3 calls after a warm-up. Each
    writes into a preallocated result (out=), so the ceiling times the multiplication alone, not
    the page faults of a fresh result array (tens of MB for r3d_18's column gradients);
(b) ours: layercalc's conv forward + backward (∇x, ∇w), GFLOP/s counting 3 x 2 x MACs a layer;
(c) torch: torch.nn.functional.conv{1,2,3}d forward + backward (autograd, the input requiring
    grad) on the same arrays and dtype.
A run times (a), (b) and (c) once per shape, back to back, so a slow spell of the machine hits
all three alike; figures are medians over runs: per shape the median time of each, for the
network the median over runs of the ratio of the occurrence-weighted totals. Targets: b/a >= 90%
and c/b (time) >= 1.2x.

--clock cpu (the default) times process CPU time with one BLAS thread in both libraries
(OPENBLAS_NUM_THREADS=1 is set before NumPy loads, torch.set_num_threads(1)): on a machine
shared with other jobs the wall clock measures the neighbours; CPU time measures the work.
--clock wall keeps the environment's thread counts and times the wall clock; OpenBLAS's and
OpenMP's worker threads spin for a while after a call and steal the cores from the other
library, so it then pauses briefly and warms up whenever it switches between NumPy and torch.

--transposed times each shape's adjoint instead: the transposed conv of the same weight from
the conv's output size back to its input size (a decoder's upsampling), against
F.conv_transpose{2,3}d; its three products are the conv's, so the ceiling is the same.

Run: python bench/bench_conv.py [--net resnet18|r3d_18] [--dtype float64|float32|both]
                                [--clock cpu|wall] [--runs R] [--batch N] [--transposed]
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


def _options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; parsed before NumPy loads, since --clock cpu fixes the BLAS thread count."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--net", choices=sorted(NETS_LABELS), default="resnet18", help="whose conv shapes (default resnet18)")
    parser.add_argument("--dtype", choices=["float64", "float32", "both"], default="both", help="(default both)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time on one thread, or wall time (default cpu)")
    parser.add_argument("--runs", type=int, default=5, help="paired runs over all shapes (default 5)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--transposed", action="store_true",
                        help="each conv's adjoint instead: the transposed conv from its output back to its input")
    return parser.parse_args(argv)


NETS_LABELS = {"resnet18": "ResNet-18's 20 convolutions at 224x224", "r3d_18": "r3d_18's 20 convolutions at an 8x56x56 clip"}

if __name__ == "__main__" and _options().clock == "cpu":
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from bench_startup import cpu_model  # noqa: E402
from layercalc.kernels.conv import conv_backward, conv_forward, conv_transpose_backward, conv_transpose_forward  # noqa: E402

# (label, C_in, input sizes, C_out, kernel, stride, padding, occurrences); 1x1 kernels of stride 2
# are the shortcut projections
NETS: dict[str, list[tuple[str, int, tuple[int, ...], int, tuple[int, ...], tuple[int, ...], tuple[int, ...], int]]] = {
    "resnet18": [
        ("conv1 7x7/2 3->64", 3, (224, 224), 64, (7, 7), (2, 2), (3, 3), 1),
        ("3x3 64->64 @56", 64, (56, 56), 64, (3, 3), (1, 1), (1, 1), 4),
        ("3x3/2 64->128", 64, (56, 56), 128, (3, 3), (2, 2), (1, 1), 1),
        ("1x1/2 64->128", 64, (56, 56), 128, (1, 1), (2, 2), (0, 0), 1),
        ("3x3 128->128 @28", 128, (28, 28), 128, (3, 3), (1, 1), (1, 1), 3),
        ("3x3/2 128->256", 128, (28, 28), 256, (3, 3), (2, 2), (1, 1), 1),
        ("1x1/2 128->256", 128, (28, 28), 256, (1, 1), (2, 2), (0, 0), 1),
        ("3x3 256->256 @14", 256, (14, 14), 256, (3, 3), (1, 1), (1, 1), 3),
        ("3x3/2 256->512", 256, (14, 14), 512, (3, 3), (2, 2), (1, 1), 1),
        ("1x1/2 256->512", 256, (14, 14), 512, (1, 1), (2, 2), (0, 0), 1),
        ("3x3 512->512 @7", 512, (7, 7), 512, (3, 3), (1, 1), (1, 1), 3),
    ],
    "r3d_18": [
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
    ],
}

SWITCH_PAUSE = 0.3  # seconds for the other library's worker threads to stop spinning (wall clock only)


def timings(fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of fn() on `clock` over `repeats` calls, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = clock()
        fn()
        out.append(clock() - start)
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


def fastest(ways: list[Callable[[], Any]], clock: Callable[[], float]) -> Callable[[], Any]:
    """Whichever of several ways of computing one product runs fastest here (median of 3 after a warm-up)."""
    return min(ways, key=lambda way: statistics.median(timings(way, 3, clock)))


def formulations(m: int, k: int, n: int, dtype: Any, rng: np.random.Generator) -> list[Callable[[], Any]]:
    """The eight ways of computing an (m, k)·(k, n) product with np.matmul: C = A·B or Cᵀ = Bᵀ·Aᵀ,
    each operand stored as itself or as a transposed view of its contiguous transpose, into a ready result."""
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    a_t, b_t = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    c, c_t = np.empty((m, n), dtype=dtype), np.empty((n, m), dtype=dtype)
    lefts, rights = (a, a_t.T), (b, b_t.T)  # A (m, k) stored both ways; B (k, n) both ways
    ways: list[Callable[[], Any]] = []
    for left in lefts:
        for right in rights:
            ways.append(lambda left=left, right=right: np.matmul(left, right, out=c))  # C = A·B
            ways.append(lambda left=left, right=right: np.matmul(right.T, left.T, out=c_t))  # Cᵀ = Bᵀ·Aᵀ
    return ways


def gemm_ceiling(co: int, rows: int, cols: int, dtype: Any, rng: np.random.Generator, clock: Callable[[], float]) -> Callable[[], None]:
    """The three products of an im2col conv, W (Co, rows)·cols (rows, cols), ∇y (Co, cols)·colsᵀ and
    Wᵀ·∇y (rows, cols), each in its fastest formulation here."""
    products = [
        fastest(formulations(co, rows, cols, dtype, rng), clock),  # forward
        fastest(formulations(co, cols, rows, dtype, rng), clock),  # ∇W
        fastest(formulations(rows, co, cols, dtype, rng), clock),  # ∇cols
    ]

    def run() -> None:
        for product in products:
            product()

    return run


def make_case(shape: tuple[Any, ...], dtype: Any, batch: int, torch: Any, rng: np.random.Generator, clock: Callable[[], float],
              transposed: bool = False) -> dict[str, Any]:
    """One conv shape's three timed functions (GEMM ceiling, ours, torch's or None) and its sizes;
    transposed: its adjoint, the transposed conv of the same weight from the conv's output size
    back to its input size (output_padding as needed), whose three products are the conv's."""
    label, c, sizes, co, k, s, p, times = shape
    r = len(sizes)
    x = rng.standard_normal((batch, c, *sizes)).astype(dtype)
    w = rng.standard_normal((co, c, *k)).astype(dtype)
    pads = tuple((q, q) for q in p)
    y, _ = conv_forward(x, w, None, s, pads, (1,) * r, 1)
    rows, cols = c * int(np.prod(k)), batch * int(np.prod(y.shape[2:]))
    flops = 3 * 2 * y.size * rows
    ones = (1,) * r
    if transposed:
        # the transposed conv reads y's shape and gives x's: (o − 1)s − 2p + (k − 1) + 1 + op = size
        extra = tuple(z - ((o - 1) * st - 2 * q + kk) for z, o, st, q, kk in zip(sizes, y.shape[2:], s, p, k))
        x, dy = y, rng.standard_normal(x.shape).astype(dtype)

        def ours() -> None:
            _, cache = conv_transpose_forward(x, w, None, s, p, extra, ones, 1)
            conv_transpose_backward(dy, cache)
    else:
        dy = rng.standard_normal(y.shape).astype(dtype)

        def ours() -> None:
            _, cache = conv_forward(x, w, None, s, pads, ones, 1)
            conv_backward(dy, cache)

    fns: dict[str, Callable[[], Any]] = {"gemm": gemm_ceiling(co, rows, cols, dtype, rng, clock), "ours": ours}
    if torch is not None:
        tx, tw, tdy = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True), torch.tensor(dy)
        conv = getattr(torch.nn.functional, f"conv_transpose{r}d" if transposed else f"conv{r}d")
        geometry = (s, p, extra) if transposed else (s, p)

        def theirs() -> None:
            tx.grad = tw.grad = None
            conv(tx, tw, None, *geometry).backward(tdy)

        fns["torch"] = theirs
    return dict(label=label, times=times, flops=flops, fns=fns, t={key: [] for key in fns})


def measure(cases: list[dict[str, Any]], runs: int, clock: Callable[[], float], pause: float) -> None:
    """Fill each case's timings: per run, each shape's functions once each, back to back."""
    for case in cases:
        for fn in case["fns"].values():
            fn()  # warm-up: first-touch allocations, BLAS buffers
    for _ in range(runs):
        for case in cases:
            for key, fn in case["fns"].items():
                if pause and key == "torch":
                    time.sleep(pause)
                    fn()
                start = clock()
                fn()
                case["t"][key].append(clock() - start)
                if pause and key == "torch":
                    time.sleep(pause)


def report(cases: list[dict[str, Any]], title: str) -> None:
    """Per-shape medians, then the network's medians over runs of the weighted totals' ratios."""
    has_torch = "torch" in cases[0]["t"]
    head = f"{'layer':24} {'x':>2} {'MMACs':>7} {'GEMM GF/s':>10} {'ours GF/s':>10} {'ours/GEMM':>10}"
    print("\n" + head + (f" {'torch GF/s':>11} {'torch/ours':>11}" if has_torch else ""))
    for case in cases:
        med = {k: statistics.median(v) for k, v in case["t"].items()}
        f = case["flops"]
        line = (f"{case['label']:24} {case['times']:>2} {f / 6e6:7.1f} {f / med['gemm'] / 1e9:10.2f} "
                f"{f / med['ours'] / 1e9:10.2f} {med['gemm'] / med['ours']:10.1%}")
        if has_torch:
            line += f" {f / med['torch'] / 1e9:11.2f} {med['torch'] / med['ours']:10.2f}x"
        print(line)
    runs = len(cases[0]["t"]["ours"])
    totals = {key: [sum(c["times"] * c["t"][key][i] for c in cases) for i in range(runs)] for key in cases[0]["t"]}
    flops = sum(c["times"] * c["flops"] for c in cases)
    print(f"\n{title}, medians of {runs} paired runs:")
    print(f"  (a) GEMM ceiling       {flops / statistics.median(totals['gemm']) / 1e9:7.2f} GFLOP/s")
    of_gemm = statistics.median(g / o for g, o in zip(totals["gemm"], totals["ours"]))
    print(f"  (b) layercalc          {flops / statistics.median(totals['ours']) / 1e9:7.2f} GFLOP/s   b/a = {of_gemm:.1%}"
          f"  [target >= 90%: {'met' if of_gemm >= 0.90 else 'NOT met'}]")
    if has_torch:
        speed = statistics.median(t / o for t, o in zip(totals["torch"], totals["ours"]))
        print(f"  (c) torch (CPU)        {flops / statistics.median(totals['torch']) / 1e9:7.2f} GFLOP/s   c/b time = {speed:.2f}x"
              f"  [target >= 1.20x: {'met' if speed >= 1.2 else 'NOT met'}]")
    else:
        print("  (c) torch not importable: comparison skipped")


def main() -> None:
    opts = _options()
    cpu = opts.clock == "cpu"
    clock = time.process_time if cpu else time.perf_counter
    threads, blas = numpy_blas()
    try:
        import torch

        torch.set_num_threads(1 if cpu else threads)
    except ImportError:
        torch = None  # type: ignore[assignment]
    print(f"CPU: {cpu_model()} x{os.cpu_count()}; numpy {np.__version__}; BLAS: {blas}")
    print(f"torch: {f'{torch.__version__}, {torch.get_num_threads()} threads' if torch else 'not importable'}; "
          f"clock: {'process CPU time' if cpu else 'wall'}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    dtypes = ["float64", "float32"] if opts.dtype == "both" else [opts.dtype]
    for dtype in dtypes:
        rng = np.random.default_rng(0)
        cases = [make_case(shape, np.dtype(dtype), opts.batch, torch, rng, clock, opts.transposed) for shape in NETS[opts.net]]
        measure(cases, opts.runs, clock, 0.0 if cpu else SWITCH_PAUSE)
        what = "transposed (each conv's adjoint)" if opts.transposed else "forward"
        report(cases, f"{NETS_LABELS[opts.net]}, {what} (weighted by occurrence), forward + backward, {dtype}, batch {opts.batch}")


if __name__ == "__main__":
    main()
