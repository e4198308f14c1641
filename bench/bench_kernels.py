"""Benchmark of the other heavy kernels `layercalc verify` runs, forward + backward, against PyTorch's
CPU implementation of the same computation in the same run: attention (grouped-query, causal),
LSTM and GRU through time, max and average pooling; float64 and float32.

Each case builds the layer from a config (the same code verify runs), draws its parameters, and
copies them into PyTorch so both sides do the same work:
- attention: Llama-style q, k, v, o projections, 8 query heads sharing 2 key/value heads, causal,
  against F.linear + F.scaled_dot_product_attention(is_causal=True, enable_gqa=True);
- lstm / gru: one layer through 64 steps, against nn.LSTM / nn.GRU (batch first), and an lstm
  whose output is projected (proj_size), which PyTorch runs as matrix products, not oneDNN's kernel;
- max / average pooling: ResNet's 3x3 stride-2 max pool at 112x112, VGG's 2x2 stride-2 one at
  224x224, a 3x3 stride-1 average pool (Inception's branch), r3d_18's 3x3x3 max pool, against
  F.max_pool{2,3}d / F.avg_pool2d;
- moe: Mixtral's block, 8 SwiGLU experts, top 2, over 256 tokens, and mamba: Hugging Face's
  MambaMixer, both run the way verify runs a block or layer (its planned instance, forward and
  backward), against the test suite's torch oracle of the same config (tests/torch_models.py:
  transformers' MixtralSparseMoeBlock loop over experts with index_add_, and MambaMixer's slow
  path, the sequential scan), the oracle's parameters copied from ours. Both sides run each
  expert on the tokens routed to it alone.
Backward is every gradient verify checks: the input's and (for the layers with weights) the
weights'. A run times ours then torch's once per case, back to back; the figure per case is the
median over runs of torch's time over ours (>= 1.0x: ours no slower).

--clock cpu (the default): process CPU time, one BLAS thread in both libraries (as bench_conv.py,
whose docstring says why); --clock wall: the wall clock and the environment's threads.

Run: python bench/bench_kernels.py [--dtype float64|float32|both] [--clock cpu|wall] [--runs R]
                                   [--only attention|lstm|gru|maxpool|avgpool|moe|mamba]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable


def _options() -> argparse.Namespace:
    """The command line; parsed before NumPy loads, since --clock cpu fixes the BLAS thread count."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dtype", choices=["float64", "float32", "both"], default="both", help="(default both)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time on one thread, or wall time (default cpu)")
    parser.add_argument("--runs", type=int, default=5, help="paired runs (default 5)")
    parser.add_argument("--only", default="", help="run only the cases whose label starts with this")
    return parser.parse_args()


if __name__ == "__main__" and _options().clock == "cpu":
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # the torch oracle of a config

from bench_conv import numpy_blas  # noqa: E402
from bench_startup import cpu_model  # noqa: E402
from layercalc.api import analyse  # noqa: E402
from layercalc.kernels import pool  # noqa: E402

Case = tuple[str, Callable[[], Any], Callable[[], Any]]  # (label, ours, torch's)


def built(layer: dict[str, Any], input: list[int], batch: int, dtype: Any, rng: np.random.Generator) -> tuple[Any, Any, dict[str, Any]]:
    """(the layer verify would run, an input (batch, *input), its parameters drawn in dtype)."""
    entry = analyse({"input": input, "batch": batch, "layers": [layer]}).entries[0]
    x = rng.standard_normal(entry.input_shape).astype(dtype)
    params = {name: (0.3 * rng.standard_normal(shape)).astype(dtype) for name, shape in entry.layer.param_shapes(entry.input_shape).items()}
    return entry.layer, x, params


def layer_pair(layer: Any, x: Any, params: dict[str, Any], theirs: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(ours: the layer's forward and backward on a fixed ∇y; torch's, as given)."""
    y, _ = layer.forward(x, params)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)

    def ours() -> None:
        _, cache = layer.forward(x, params)
        layer.backward(dy, params, cache)

    return ours, theirs


def attention_case(dtype: Any, torch: Any, rng: np.random.Generator) -> Case:
    """Grouped-query causal attention: batch 2, 256 tokens, width 512, 8 heads of 64, 2 key/value heads."""
    layer, x, params = built({"attention": {"num_heads": 8, "num_kv_heads": 2, "causal": True}}, [256, 512], 2, dtype, rng)
    f = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    n, t, _ = x.shape

    def heads(a: Any, h: int) -> Any:
        return a.view(n, t, h, -1).transpose(1, 2)

    def theirs() -> None:
        q, k, v = (heads(f.linear(tx, tp[f"{m}_proj.weight"]), h) for m, h in (("q", 8), ("k", 2), ("v", 2)))
        o = f.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        y = f.linear(o.transpose(1, 2).reshape(n, t, -1), tp["o_proj.weight"])
        y.backward(tdy)

    tdy = torch.tensor(np.random.default_rng(1).standard_normal(x.shape).astype(dtype))
    return ("attention GQA 8/2 causal T256 E512 N2", *layer_pair(layer, x, params, theirs))


def recurrent_case(kind: str, dtype: Any, torch: Any, rng: np.random.Generator, proj: int = 0) -> Case:
    """One lstm or gru layer, hidden 128 (an lstm's output projected to proj when set), over 64
    steps of 128 features, batch 4."""
    extra = {"proj_size": proj} if proj else {}
    layer, x, params = built({kind: {"hidden_size": 128, **extra}}, [64, 128], 4, dtype, rng)
    module = getattr(torch.nn, kind.upper())(128, 128, batch_first=True, **extra).to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        for name, value in module.named_parameters():
            value.copy_(torch.tensor(params[name]))
    tx = torch.tensor(x, requires_grad=True)
    tdy = torch.tensor(np.random.default_rng(1).standard_normal((4, 64, proj or 128)).astype(dtype))

    def theirs() -> None:
        module.zero_grad(set_to_none=True)
        tx.grad = None
        module(tx)[0].backward(tdy)

    return (f"{kind} H128 T64 F128 N4{f' P{proj}' if proj else ''}", *layer_pair(layer, x, params, theirs))


def pool_case(label: str, shape: tuple[int, ...], kind: str, k: int, s: int, p: int, dtype: Any, torch: Any, rng: np.random.Generator) -> Case:
    """A max or average pool of x (shape), kernel k, stride s, padding p in every spatial axis."""
    r = len(shape) - 2
    x = rng.standard_normal(shape).astype(dtype)
    ks, ss, ps = (k,) * r, (s,) * r, (p,) * r
    if kind == "max":
        y, _ = pool.maxpool_forward(x, ks, ss, ps, (1,) * r, False)
    else:
        y, _ = pool.avgpool_forward(x, ks, ss, ps, False, True)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    tx, tdy = torch.tensor(x, requires_grad=True), torch.tensor(dy)
    fn = getattr(torch.nn.functional, f"{kind}_pool{r}d")

    def ours() -> None:
        if kind == "max":
            pool.maxpool_backward(dy, pool.maxpool_forward(x, ks, ss, ps, (1,) * r, False)[1])
        else:
            pool.avgpool_backward(dy, pool.avgpool_forward(x, ks, ss, ps, False, True)[1])

    def theirs() -> None:
        tx.grad = None
        fn(tx, k, s, p).backward(tdy)

    return label, ours, theirs


def block_case(label: str, layer: dict[str, Any], input: list[int], batch: int, dtype: Any, torch: Any) -> Case:
    """A layer or block as verify runs it (planned instance, forward and backward) against the torch
    oracle of the same config, its parameters copied from ours in the oracle's order."""
    import torch_models
    from layercalc.verify import Options, backward, forward, plan

    config = {"input": input, "batch": batch, "layers": [layer]}
    root, _ = plan(analyse(config), Options(seed=3, dtype=np.dtype(dtype).name))
    model, shape = torch_models.build(config)
    model = model.to(getattr(torch, np.dtype(dtype).name)).train()
    with torch.no_grad():
        for (_, _, arr), p in zip(root.all_params(), model.parameters(), strict=True):
            p.copy_(torch.tensor(arr))
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    y, _ = forward(root, x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    tx, tdy = torch.tensor(x, requires_grad=True), torch.tensor(dy)

    def ours() -> None:
        backward(root, dy, forward(root, x)[1], {})

    def theirs() -> None:
        model.zero_grad(set_to_none=True)
        tx.grad = None
        model(tx).backward(tdy)

    return label, ours, theirs


def swiglu(width: int, inner: int) -> list[dict[str, Any]]:
    """Mixtral's expert: w2(silu(w1 x) * w3 x), no biases."""
    return [{"multiply": {"branches": [[{"linear": {"out_features": inner, "bias": False}, "name": "w1"}, "silu"],
                                       [{"linear": {"out_features": inner, "bias": False}, "name": "w3"}]]}},
            {"linear": {"out_features": width, "bias": False}, "name": "w2"}]


def cases(dtype: Any, torch: Any) -> list[Case]:
    """Every case in one dtype, on fixed random data."""
    # PyTorch says once that a projected LSTM does not run through oneDNN: the bench says so itself
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    rng = np.random.default_rng(0)
    moe = {"moe": {"num_experts": 8, "top_k": 2, "expert": swiglu(256, 512)}}
    return [
        attention_case(dtype, torch, rng),
        recurrent_case("lstm", dtype, torch, rng),
        recurrent_case("lstm", dtype, torch, rng, proj=64),
        recurrent_case("gru", dtype, torch, rng),
        pool_case("maxpool 3x3/2 64@112 (ResNet)", (1, 64, 112, 112), "max", 3, 2, 1, dtype, torch, rng),
        pool_case("maxpool 2x2/2 64@224 (VGG)", (1, 64, 224, 224), "max", 2, 2, 0, dtype, torch, rng),
        pool_case("maxpool 3x3x3/2 64@8x56", (1, 64, 8, 56, 56), "max", 3, 2, 1, dtype, torch, rng),
        pool_case("avgpool 3x3/1 192@28", (1, 192, 28, 28), "avg", 3, 1, 1, dtype, torch, rng),
        pool_case("avgpool 2x2/2 64@112", (1, 64, 112, 112), "avg", 2, 2, 0, dtype, torch, rng),
        block_case("moe 8 SwiGLU top2 E256 I512 M256", moe, [128, 256], 2, dtype, torch),
        block_case("mamba E256 D512 n16 T128 N2", {"mamba": {}}, [128, 256], 2, dtype, torch),
    ]


def run(selected: list[Case], runs: int, clock: Callable[[], float]) -> None:
    """Time each case's two functions back to back per run and print the medians."""
    times: dict[str, dict[str, list[float]]] = {label: {"ours": [], "torch": []} for label, _, _ in selected}
    for _, ours, theirs in selected:
        ours(), theirs()  # warm-up
    for _ in range(runs):
        for label, ours, theirs in selected:
            for key, fn in (("ours", ours), ("torch", theirs)):
                start = clock()
                fn()
                times[label][key].append(clock() - start)
    print(f"{'case':40} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>11}")
    for label, t in times.items():
        ratio = statistics.median(b / a for a, b in zip(t["ours"], t["torch"]))
        print(f"{label:40} {statistics.median(t['ours']) * 1e3:9.2f} {statistics.median(t['torch']) * 1e3:9.2f} {ratio:10.2f}x"
              f"  {'' if ratio >= 1.0 else '< 1.0x'}")


def main() -> None:
    opts = _options()
    cpu = opts.clock == "cpu"
    import torch

    threads, blas = numpy_blas()
    torch.set_num_threads(1 if cpu else threads)
    print(f"CPU: {cpu_model()} x{os.cpu_count()}; numpy {np.__version__}; BLAS: {blas}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; clock: {'process CPU time' if cpu else 'wall'}")
    for dtype in ["float64", "float32"] if opts.dtype == "both" else [opts.dtype]:
        selected = [c for c in cases(np.dtype(dtype), torch) if c[0].startswith(opts.only)]
        print(f"\n{dtype}, forward + backward, medians of {opts.runs} paired runs:")
        run(selected, opts.runs, time.process_time if cpu else time.perf_counter)


if __name__ == "__main__":
    main()
