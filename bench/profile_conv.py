"""Where the conv kernels' time goes, per ResNet-18 or r3d_18 shape: GEMMs, im2col copies (row columns' included), the col2im
scatter, padding, and the rest (allocation, the flipped kernel's copy, ∇y's zero border, transposes), forward + backward.

Process CPU time on one BLAS thread (OPENBLAS_NUM_THREADS=1 is set before NumPy loads). Each part
is timed by wrapping the kernel module's own building blocks (np.matmul as the module calls it,
im2col, row_im2col, col2im_into, pad) for the length of the run; 'other' is the call's
total minus the parts. Figures are medians over repeats, and the network's line weights each
shape by its occurrences.

Run: python bench/profile_conv.py [--net resnet18|r3d_18] [--dtype float64|float32] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_conv import NETS, numpy_blas  # noqa: E402
from bench_startup import cpu_model  # noqa: E402
from layercalc.kernels import conv  # noqa: E402

PARTS = ("GEMM", "im2col", "col2im", "pad")
spent: dict[str, float] = dict.fromkeys(PARTS, 0.0)


def timed(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn, adding its process CPU time to spent[part] (outermost call only, so nested parts are not counted twice)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[part] += time.process_time() - start

    return wrapper


class _NumPy:
    """The numpy module as conv.py sees it, with matmul timed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    matmul = staticmethod(timed("GEMM", np.matmul))


def instrument() -> None:
    """Wrap the conv module's building blocks so their time lands in `spent`."""
    conv.np = _NumPy()  # type: ignore[assignment]
    for part, name in (("im2col", "im2col"), ("im2col", "row_im2col"), ("col2im", "col2im_into"), ("pad", "pad")):
        setattr(conv, name, timed(part, getattr(conv, name)))


def profile(shape: tuple[Any, ...], dtype: Any, repeats: int) -> dict[str, float]:
    """Median seconds of each part and of the whole forward + backward, for one shape at batch 1."""
    _, c, sizes, co, k, s, p, _ = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c, *sizes)).astype(dtype)
    w = rng.standard_normal((co, c, *k)).astype(dtype)
    pads = tuple((q, q) for q in p)
    ones = (1,) * len(sizes)
    y, _ = conv.conv_forward(x, w, None, s, pads, ones, 1)
    dy = rng.standard_normal(y.shape).astype(dtype)
    samples: dict[str, list[float]] = {key: [] for key in (*PARTS, "total")}
    for i in range(repeats + 1):
        for part in PARTS:
            spent[part] = 0.0
        start = time.process_time()
        _, cache = conv.conv_forward(x, w, None, s, pads, ones, 1)
        conv.conv_backward(dy, cache)
        total = time.process_time() - start
        if i:  # the first call warms up
            samples["total"].append(total)
            for part in PARTS:
                samples[part].append(spent[part])
    return {key: statistics.median(v) for key, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--net", choices=sorted(NETS), default="resnet18")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--repeats", type=int, default=7)
    opts = parser.parse_args()
    print(f"CPU: {cpu_model()}; numpy {np.__version__}; BLAS: {numpy_blas()[1]}; {opts.dtype}, process CPU time, ms")
    instrument()
    cols = (*PARTS, "other", "total")
    print(f"{'layer':24} {'x':>2} " + " ".join(f"{c:>7}" for c in cols))
    weighted = dict.fromkeys(cols, 0.0)
    for shape in NETS[opts.net]:
        med = profile(shape, np.dtype(opts.dtype), opts.repeats)
        med["other"] = med["total"] - sum(med[p] for p in PARTS)
        print(f"{shape[0]:24} {shape[-1]:>2} " + " ".join(f"{med[c] * 1e3:7.2f}" for c in cols))
        for c in cols:
            weighted[c] += shape[-1] * med[c]
    print(f"{'network (weighted)':24} {'':>2} " + " ".join(f"{weighted[c] * 1e3:7.1f}" for c in cols))
    print(f"{'share':24} {'':>2} " + " ".join(f"{weighted[c] / weighted['total']:7.1%}" for c in cols))


if __name__ == "__main__":
    main()
