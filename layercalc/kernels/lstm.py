"""NumPy LSTM kernels for one layer and direction, float64 or float32, with or without a
projection: the forward through time and backpropagation through time, gates in PyTorch's order
(i, f, g, o); with a projection h = W_hr·m, where m = o·tanh(c), else h = m.

Inside the time loops every array is feature-major, (features, N) per step, so that each gate
block is a contiguous run: a ufunc on a strided (N, H) slice of the (N, 4H) gates costs several
times one on a contiguous block at these sizes (4×128 of 4×512 in float32: 4.2 µs against 0.5 µs).

The time loop cannot be batched (each step needs the previous h), so what is left per step is
cut to the minimum number of calls, each writing into preallocated whole-sequence buffers:
- forward: the input's products for all steps are one product before the loop; a step is the
  product with W_hh, one tanh over all four gate blocks (the sigmoid gates' rows of the weights
  and biases are pre-scaled by 1/2, since sigmoid(a) = (1 + tanh(a/2))/2 and halving is exact)
  and the cell update;
- backward: every factor that does not depend on the carried gradients (the gates' derivatives
  times the values they multiply) is computed for all steps at once before the loop, so a step
  is a handful of products and the one product with W_hh (and one with W_hr); the W_hh and W_hr
  gradients are one product each over all steps after the loop, as are the input's products.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]

__all__ = ["lstm_forward", "lstm_backward"]


def _halved(w: Array, hid: int) -> Array:
    """w (4·hid, …) with the sigmoid gates' blocks (i, f, o) times 1/2 (exact: a power of two)."""
    out = w.copy()
    out[: 2 * hid] *= 0.5
    out[3 * hid :] *= 0.5
    return out


def lstm_forward(x: Array, p: dict[str, Any], reverse: bool) -> tuple[Array, tuple[Any, ...]]:
    """(N, T, F) -> h for every step (N, T, P or H), and the cache lstm_backward reads; p: weight_ih
    (4H, F), weight_hh (4H, P or H), optional bias_ih and bias_hh (4H,), optional weight_hr (P, H)."""
    n, steps, f = x.shape
    hid = p["weight_hh"].shape[0] // 4
    w_hr = p.get("weight_hr")
    out = hid if w_hr is None else w_hr.shape[0]
    w_hh = _halved(p["weight_hh"], hid)
    # the input's products for every step, made feature-major (T, 4H, N) by the product itself:
    # W_ih times each step's (F, N) slice of x, whose copy is a quarter the size of the products'
    # (transposing the (N·T, 4H) product of one big matmul instead cost more than the product)
    xw = np.matmul(_halved(p["weight_ih"], hid), np.ascontiguousarray(x.transpose(1, 2, 0)))
    dtype = xw.dtype
    if "bias_ih" in p:  # as a whole (4H, N) array, not a (4H, 1) column: see `half` below
        xw += np.repeat(_halved(p["bias_ih"] + p["bias_hh"], hid)[:, None], n, axis=1)
    acts = np.empty((steps, 4 * hid, n), dtype=dtype)  # per processed step: i, f, g, o
    cs = np.zeros((steps + 1, hid, n), dtype=dtype)  # cell states, cs[k + 1] after step k
    hs = np.zeros((steps + 1, out, n), dtype=dtype)  # hidden states, likewise
    # m = o·tanh(c) of each step: h itself without a projection, else what W_hr projects
    ms = hs[1:] if w_hr is None else np.empty((steps, hid, n), dtype=dtype)
    tcs = np.empty((steps, hid, n), dtype=dtype)  # tanh of each new cell state
    hh, ig = np.empty((4 * hid, n), dtype=dtype), np.empty((hid, n), dtype=dtype)
    # sigmoid(a) = tanh(a/2)/2 + 1/2 on the i, f and o blocks; g keeps tanh(a) (times 1, plus 0)
    # (whole (4H, N) arrays: a (4H, 1) column broadcast over N would run N-long inner loops)
    half = np.full((4 * hid, n), 0.5, dtype=dtype)
    half[2 * hid : 3 * hid] = 1.0
    shift = 1.0 - half
    # every step's views made at C speed by zip, not indexed one by one in the loop
    per_step = zip(acts, acts.reshape(steps, 4, hid, n), xw[::-1] if reverse else xw, cs, cs[1:], tcs, hs, ms, hs[1:])
    for a, (i, f, g, o), xt, c, c_new, tc, h, m, h_new in per_step:
        np.matmul(w_hh, h, out=hh)
        np.add(xt, hh, out=a)
        np.tanh(a, out=a)  # tanh(a/2) for i, f, o (their weights are halved), tanh(a) for g
        a *= half
        a += shift
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=ig)
        c_new += ig
        np.tanh(c_new, out=tc)
        np.multiply(o, tc, out=m)
        if w_hr is not None:
            np.matmul(w_hr, m, out=h_new)
    ys = hs[1:].transpose(2, 0, 1)  # (N, T, P or H), in processing order
    return np.ascontiguousarray(ys[:, ::-1] if reverse else ys), (x, acts, cs, hs, ms, tcs, reverse)


def _factors(acts: Array, cs: Array, tcs: Array) -> tuple[Array, Array, Array, Array]:
    """Per step, what does not depend on the carried gradients: (dc/dh (T, H, N), da_{i,f,g}/dc
    (T, 3, H, N), da_o/dh (T, H, N), the forget gate (T, H, N)), of the gate pre-activations a."""
    steps, four, n = acts.shape
    hid = four // 4
    gates = acts.reshape(steps, 4, hid, n)
    i, f, g, o = (gates[:, j] for j in range(4))
    to_c = o * (1.0 - tcs * tcs)
    from_c = np.empty((steps, 3, hid, n), dtype=acts.dtype)
    from_c[:, 0] = g * i * (1.0 - i)
    from_c[:, 1] = cs[:-1] * f * (1.0 - f)
    from_c[:, 2] = i * (1.0 - g * g)
    return to_c, from_c, tcs * o * (1.0 - o), np.ascontiguousarray(f)


def lstm_backward(dys: Array, p: dict[str, Any], cache: tuple[Any, ...]) -> tuple[Array, dict[str, Array]]:
    """(dL/dx (N, T, F), the gradients of p's entries) from dL/dh (N, T, P or H) of every step."""
    x, acts, cs, hs, ms, tcs, reverse = cache
    steps, four, n = acts.shape
    hid, out = four // 4, hs.shape[1]
    w_hr_t = None if "weight_hr" not in p else p["weight_hr"].T  # (H, P), a view, as W_hh's
    to_c, from_c, to_o, forget = _factors(acts, cs, tcs)
    w_hh_t = p["weight_hh"].T  # (P or H, 4H); as a view: OpenBLAS takes it transposed at full speed here
    dys = np.ascontiguousarray((dys[:, ::-1] if reverse else dys).transpose(1, 2, 0))  # (T, P or H, N), processing order
    da = np.empty_like(acts)  # dL/da per processed step
    gates = da.reshape(steps, 4, hid, n)
    dh = np.zeros((out, n), dtype=acts.dtype)
    dc, dcm = (np.zeros((hid, n), dtype=acts.dtype) for _ in range(2))
    # dL/dh of each step, both ways it reaches the loss: dL/dm itself without a projection, else
    # kept for W_hr's gradient and carried back through W_hr to dL/dm
    dhs = np.empty((steps, out, n), dtype=acts.dtype)
    dm = dhs if w_hr_t is None else np.empty((steps, hid, n), dtype=acts.dtype)
    # the processing order reversed; every step's views made at C speed by zip
    per_step = zip(dys[::-1], dhs[::-1], dm[::-1], to_c[::-1], from_c[::-1], to_o[::-1], forget[::-1],
                   gates[::-1, :3], gates[::-1, 3], da[::-1])
    for k, (dy, dh_k, dm_k, c_slope, c_gates, o_slope, f, d3, do, d4) in enumerate(per_step, start=1):
        np.add(dy, dh, out=dh_k)  # h_k feeds its output and the next step
        if w_hr_t is not None:
            np.matmul(w_hr_t, dh_k, out=dm_k)
        np.multiply(dm_k, c_slope, out=dcm)  # c_k reaches the loss through h_k
        dc += dcm  # and through c_{k+1}
        np.multiply(dc, c_gates, out=d3)
        np.multiply(dm_k, o_slope, out=do)
        dc *= f  # the forget gate carries the cell state's gradient back one step
        if k < steps:  # the initial state is a constant: no gradient is wanted for it
            np.matmul(w_hh_t, d4, out=dh)
    flat = (da[::-1] if reverse else da).transpose(2, 0, 1).reshape(-1, four)  # (N·T, 4H), time order
    previous = hs[:-1][::-1] if reverse else hs[:-1]  # the state each step read, time order
    grads = {"weight_ih": flat.T @ x.reshape(-1, x.shape[-1]),
             "weight_hh": flat.T @ previous.transpose(2, 0, 1).reshape(-1, out)}
    if "bias_ih" in p:
        grads["bias_ih"] = flat.sum(axis=0)
        grads["bias_hh"] = grads["bias_ih"].copy()
    if w_hr_t is not None:  # Σ_k dL/dh_k · m_kᵀ over the steps and the batch, in one product
        grads["weight_hr"] = dhs.transpose(1, 0, 2).reshape(out, -1) @ ms.transpose(1, 0, 2).reshape(hid, -1).T
    return (flat @ p["weight_ih"]).reshape(n, steps, -1), grads
