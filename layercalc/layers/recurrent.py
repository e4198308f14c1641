"""Recurrent layers: lstm, gru and rnn, stacked and bidirectional (lstm also with a projection).

Sequences are batch first: (N, T, F) -> (N, T, D·H), D = 2 when bidirectional, H = proj_size or
hidden_size. The parameters are PyTorch's, by its attribute names, for each layer k and direction
(the reverse one suffixed '_reverse'): weight_ih_l{k} (G·hidden, F_k), weight_hh_l{k} (G·hidden, H),
bias_ih_l{k} and bias_hh_l{k} (G·hidden), and with a projection weight_hr_l{k} (proj_size, hidden).
G is the number of gates stacked in those matrices, in PyTorch's order: lstm 4 (i, f, g, o),
gru 3 (r, z, n), rnn 1. F_k is layer k's input size: the input's features for the first layer,
D·H for the layers above it.

The NumPy backward is backpropagation through time: each direction of each layer runs its time
loop in reverse, carrying dL/dh (and for lstm dL/dc) from step t to step t-1.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import SchemaError
from ..lazy import np
from .base import Arg, Bool, Choice, Float, Int, Layer, Opt, Shape, register
from .counting import ONEDNN_RNN, Grad
from .peers import ACT, BIAS, RECURRENT, row, rules

_COMMON = (
    Arg("hidden_size", Int()),
    Arg("num_layers", Int(), 1),
    Arg("bias", Bool(), True),
    Arg("bidirectional", Bool(), False),
    Arg("dropout", Float(0.0, 1.0), 0.0, "between stacked layers in training; no cost, identity in verify"),
    Arg("batch_first", Bool(), True, "sequences are always (N, T, F); false is refused"),
    Arg("input_size", Opt(Int()), None, "inferred from the input"),
)


def sigmoid(a: Any) -> Any:
    """1 / (1 + e^-a), written with tanh so that no exp overflows for large |a|."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


# a stack this deep has no use, and its per-layer weight names would fill the memory
MAX_LAYERS = 10_000


class _Recurrent(Layer):
    """What lstm, gru and rnn share: the parameter layout per layer and direction, the cost rules
    and the time loop. A subclass gives one time step forward (`step`) and backward (`step_back`)."""

    gates: ClassVar[int] = 1  # G: gate blocks stacked in weight_ih / weight_hh
    # elementwise gate arithmetic per hidden unit and step, as thop and ptflops count it
    thop_gate_ops: ClassVar[int] = 0
    ptflops_gate_ops: ClassVar[int] = 0
    feature_dim = -1  # features in -> hidden (x2 both ways) out: 128→512
    feature_args = ("input_size",)
    torch_rule: ClassVar[str] = "as layercalc"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the words are made from the same class constants the cost rules use
        g, proj = cls.gates, any(a.name == "proj_size" for a in cls.args)
        cls.shape_rule = (
            "(N, T, F) -> (N, T, D·H): D = 2 if bidirectional else 1, H = "
            + ("proj_size if set, else hidden_size" if proj else "hidden_size")
            + "; input_size must equal F; batch_first must be true"
        )
        cls.params_rule = (
            "for each of the num_layers layers k and D directions: weight_ih G·hidden_size·F_k, weight_hh"
            " G·hidden_size·H, + bias_ih and bias_hh G·hidden_size each if bias"
            + (", + weight_hr proj_size·hidden_size if proj_size" if proj else "")
            + f"; F_0 = F, F_k = D·H above; G = {g} gates"
        )
        cls.macs_rule = (
            "N·T·D·Σ_k G·hidden_size·(F_k + H)" + (" + N·T·D·num_layers·hidden_size·proj_size" if proj else "")
            + f", G = {g}: the gate products W_ih x and W_hh h at every step"
            + (" and the projection W_hr h" if proj else "")
        )
        per_step = "N·T·D·num_layers·hidden_size"
        cls.peer_rules = rules(
            torch=cls.torch_rule,
            thop=("N·T·D·Σ_k G·hidden_size·(F'_k + hidden_size), F'_k = D·hidden_size above"
                  + (" (proj_size ignored)" if proj else "")
                  + f", + {2 * g}·{per_step} if bias, + {g + cls.thop_gate_ops}·{per_step} gate ops"),
            ptflops=("N·T·D·Σ_k G·hidden_size·(F_k + H)" + (" (not weight_hr)" if proj else "")
                     + f", + {2 * g}·{per_step} if bias, + {cls.ptflops_gate_ops}·{per_step} gate ops"),
            torchinfo=f"as layercalc (every weight element × N·T), + {2 * g}·{per_step} if bias",
        )
        cls.inert_args = tuple(a for a in ("dropout", "nonlinearity") if any(b.name == a for b in cls.args))

    hidden_size: int
    num_layers: int
    bias: bool
    bidirectional: bool
    dropout: float
    batch_first: bool
    input_size: int | None

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if not self.batch_first:
            raise SchemaError("batch_first false is not supported: sequences flow as (N, T, F)", value=False)
        if self.num_layers > MAX_LAYERS:  # each layer has its own named weights, listed one by one
            raise SchemaError(f"num_layers: at most {MAX_LAYERS:,} stacked layers, got {self.num_layers:,}", value=self.num_layers)

    # -- layout --
    @property
    def proj(self) -> int:
        """proj_size (0: no projection; only lstm has one)."""
        return 0

    @property
    def directions(self) -> int:
        """D: 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """H: each direction's output size per step (the projection's, if any)."""
        return self.proj or self.hidden_size

    def python_steps(self, x: Shape) -> int:
        # the time loop of every stacked layer and direction (run, and run_back in the backward)
        return x[1] * self.num_layers * self.directions

    def work_elements(self, x: Shape) -> int:
        # every step of every layer and direction keeps its gate activations and states for the
        # backward (lstm: h, c, i, f, g, o, tanh c and one more, 2·G arrays of (N, hidden) for
        # G gates), and the backward adds the input product's gradient (N, T, G·hidden) and the
        # per-step outputs (N, T, H) of each layer
        n, steps = x[0], x[1]
        per_cell = n * steps * (2 * self.gates * self.hidden_size + self.gates * self.hidden_size + 2 * self.out_size)
        return per_cell * self.num_layers * self.directions

    def layer_inputs(self, x: Shape) -> list[int]:
        """F_k for each stacked layer: the input's features, then D·H."""
        return [x[-1]] + [self.directions * self.out_size] * (self.num_layers - 1)

    def cells(self) -> list[tuple[int, str]]:
        """(layer index k, parameter suffix) of every layer and direction, in PyTorch's order."""
        suffixes = ("", "_reverse")[: self.directions]
        return [(k, f"_l{k}{s}") for k in range(self.num_layers) for s in suffixes]

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, 3, layout="(N, T, features)")
        self.expect_size("input_size", self.input_size, x[-1])
        return (x[0], x[1], self.directions * self.out_size)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        rows, hid = self.gates * self.hidden_size, self.hidden_size
        inputs = self.layer_inputs(x)
        shapes: dict[str, Shape] = {}
        for k, suffix in self.cells():
            shapes[f"weight_ih{suffix}"] = (rows, inputs[k])
            shapes[f"weight_hh{suffix}"] = (rows, self.out_size)
            if self.bias:
                shapes[f"bias_ih{suffix}"] = (rows,)
                shapes[f"bias_hh{suffix}"] = (rows,)
            if self.proj:
                shapes[f"weight_hr{suffix}"] = (self.proj, hid)
        return shapes

    # -- cost --
    def step_macs(self, f: int) -> int:
        """MACs of one step of one direction for one sample, input size f: the gate products
        W_ih x (G·hidden·f) and W_hh h (G·hidden·H), and the projection W_hr m (hidden·proj)."""
        return self.gates * self.hidden_size * (f + self.out_size) + self.hidden_size * self.proj

    def macs(self, x: Shape, y: Shape) -> int:
        # every step of every direction of every layer, for each of the N sequences of length T
        runs = x[0] * x[1] * self.directions
        return runs * sum(self.step_macs(f) for f in self.layer_inputs(x))

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, t, d, hid = x[0], x[1], self.directions, self.hidden_size
        runs = n * t * d
        g = self.gates
        products = sum(self.step_macs(f) for f in self.layer_inputs(x)) * runs
        bias = 2 * g * hid * self.num_layers * runs if self.bias else 0
        # thop: hidden_size everywhere, so a projection is ignored (later layers' input = D·hidden);
        # per gate one add of the two products' sums, plus its own elementwise count
        thop_inputs = [x[-1]] + [d * hid] * (self.num_layers - 1)
        thop = sum(g * hid * (f + hid) for f in thop_inputs) * runs
        thop_act = (g + self.thop_gate_ops) * hid * self.num_layers * runs
        # ptflops: weight_ih and weight_hh elements (not weight_hr), its gate arithmetic and both biases
        ptflops = sum(g * hid * (f + self.out_size) for f in self.layer_inputs(x)) * runs
        pt_act = self.ptflops_gate_ops * hid * self.num_layers * runs
        # torchinfo: every parameter element times N·T (the output's first two dims); the weights
        # hold as many elements as one step's products, so its weight part equals layercalc's
        return [
            row(RECURRENT, layercalc=products, torch=products,
                thop=thop, ptflops=(ptflops, 0), torchinfo=products),
            row(BIAS, thop=bias, ptflops=(bias, 0), torchinfo=bias),
            row(ACT, thop=thop_act, ptflops=(pt_act, 0)),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # the weight gradients cost one forward; the input gradients: through W_ih for every step
        # (not for the first layer when its input needs none), through W_hh for steps t >= 1 only
        # (the initial state is a constant zero: no gradient is wanted for it), through W_hr always
        n, t, d, hid = x[0], x[1], self.directions, self.hidden_size
        rows = self.gates * hid
        dx = 0
        for k, f in enumerate(self.layer_inputs(x)):
            through_ih = t * rows * f if (k > 0 or input_grad) else 0
            dx += n * d * (through_ih + (t - 1) * rows * self.out_size + t * hid * self.proj)
        kernel = self.fused_kernel()
        return [Grad(self.macs(x, y), weight=True, kernel=kernel), Grad(dx, weight=False, kernel=kernel)]

    # -- NumPy forward and backpropagation through time --
    def initial_state(self, n: int, dtype: Any) -> Any:
        """The extra recurrent state besides h at t = 0 (lstm: the cell state), or None."""
        return None

    def step(self, xi: Any, h: Any, state: Any, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        """One time step: (h_t, state_t, cache) from xi = W_ih x_t + b_ih (N, G·hidden), h_{t-1} (N, H)."""
        raise NotImplementedError

    def step_back(self, dh: Any, dstate: Any, cache: Any, p: dict[str, Any], grads: dict[str, Any]) -> tuple[Any, Any, Any]:
        """(dL/dxi, dL/dh_{t-1}, dL/dstate_{t-1}) from dL/dh_t and dL/dstate_t; adds this step's
        contributions to the weight_hh, bias_hh (and weight_hr) gradients in grads."""
        raise NotImplementedError

    def hh_grads(self, dhh: Any, h: Any, grads: dict[str, Any]) -> None:
        """Accumulate dL/dW_hh and dL/db_hh of one step from dL/d(W_hh h + b_hh) (N, G·hidden)."""
        grads["weight_hh"] += dhh.T @ h
        if self.bias:
            grads["bias_hh"] += dhh.sum(axis=0)

    def hh(self, h: Any, p: dict[str, Any]) -> Any:
        """W_hh h + b_hh for a batch of states (N, H) -> (N, G·hidden)."""
        out = h @ (p["weight_hh_t"] if "weight_hh_t" in p else p["weight_hh"].T)
        return out + p["bias_hh"] if self.bias else out

    def run(self, x: Any, p: dict[str, Any], reverse: bool) -> tuple[Any, Any]:
        """One direction of one layer over the whole sequence: (N, T, F_k) -> (N, T, H) and a cache."""
        n, t_len, _ = x.shape
        # the transposed weights copied C-contiguous, once: OpenBLAS multiplies a few rows by a
        # transposed operand several times slower (4×128 by 128×512 in float32: 48 µs against 7 µs)
        w_ih_t = np.ascontiguousarray(p["weight_ih"].T)
        p = {**p, "weight_hh_t": np.ascontiguousarray(p["weight_hh"].T)}
        h = np.zeros((n, self.out_size), dtype=x.dtype)
        state = self.initial_state(n, x.dtype)
        ys = np.empty((n, t_len, self.out_size), dtype=x.dtype)
        steps: list[Any] = [None] * t_len
        for t in (reversed(range(t_len)) if reverse else range(t_len)):
            # the input product step by step, not for all N·T rows at once: small products run on
            # this thread, while one large product is spread over OpenBLAS's threads, which wait for
            # cores on a busy machine (verify of a 2-layer bidirectional LSTM on 2 loaded cores:
            # 6.4 s with one product, 2.2 s this way)
            xi = x[:, t] @ w_ih_t
            if self.bias:
                xi += p["bias_ih"]
            h, state, steps[t] = self.step(xi, h, state, p)
            ys[:, t] = h
        return ys, (x, steps, reverse)

    def run_back(self, dys: Any, p: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        """Backpropagation through time for one direction of one layer: (dL/dx, gradients)."""
        x, steps, reverse = cache
        n, t_len, f = x.shape
        grads = {name: np.zeros_like(arr) for name, arr in p.items() if name not in ("weight_ih", "bias_ih")}
        dxi = np.empty((n, t_len, self.gates * self.hidden_size), dtype=dys.dtype)
        dh = np.zeros((n, self.out_size), dtype=dys.dtype)
        dstate = self.initial_state(n, dys.dtype)  # nothing reaches the last step's state from later: zero
        # the forward order reversed: a step's h feeds its output and the next step
        for t in (range(t_len) if reverse else reversed(range(t_len))):
            dxi[:, t], dh, dstate = self.step_back(dys[:, t] + dh, dstate, steps[t], p, grads)
        flat = dxi.reshape(-1, dxi.shape[-1])
        grads["weight_ih"] = flat.T @ x.reshape(-1, f)
        if self.bias:
            grads["bias_ih"] = flat.sum(axis=0)
        return dxi @ p["weight_ih"], grads

    def _cell_params(self, params: dict[str, Any], suffix: str) -> dict[str, Any]:
        """One layer and direction's parameters without their suffix: {'weight_ih': ..., ...}."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        return {name: params[name + suffix] for name in names if name + suffix in params}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        caches = []
        h = x
        cells = self.cells()  # once: listing them for each layer made a forward quadratic in num_layers
        for k in range(self.num_layers):
            outs = []
            for _, suffix in cells[k * self.directions : (k + 1) * self.directions]:
                y, cache = self.run(h, self._cell_params(params, suffix), reverse=suffix.endswith("_reverse"))
                outs.append(y)
                caches.append(cache)
            # the directions' outputs side by side, forward first (dropout: identity here)
            h = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)
        return h, caches

    def backward(self, dy: Any, params: dict[str, Any], caches: Any) -> tuple[Any, dict[str, Any]]:
        grads: dict[str, Any] = {}
        width = self.out_size
        cells = self.cells()
        for k in reversed(range(self.num_layers)):
            dx = None
            for d in range(self.directions):
                i = k * self.directions + d
                suffix = cells[i][1]
                dx_d, g = self.run_back(dy[..., d * width : (d + 1) * width], self._cell_params(params, suffix), caches[i])
                grads.update({f"{name}{suffix}": v for name, v in g.items()})
                dx = dx_d if dx is None else dx + dx_d  # both directions read the same input
            dy = dx
        return dy, grads


@register
class LSTM(_Recurrent):
    type_name = "lstm"
    summary = "long short-term memory over (N, T, F): gates i, f, g, o; c = f·c + i·g, h = o·tanh(c)"
    args = (*_COMMON[:4], Arg("proj_size", Int(low=0), 0, "0: none; else h = W_hr h, < hidden_size"), *_COMMON[4:])
    torch_rule = "as layercalc with proj_size; not counted without it (oneDNN's fused CPU kernel, which FlopCounterMode has no rule for)"
    example = ([5, 3], {"hidden_size": 4})
    gates = 4
    thop_gate_ops = 4  # c = f·c + i·g (3) and h = o·tanh(c) (1)
    ptflops_gate_ops = 10  # 4 gate sums, 3 for c, 3 for h

    proj_size: int

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.proj_size >= self.hidden_size:
            raise SchemaError(
                f"proj_size {self.proj_size} must be smaller than hidden_size {self.hidden_size}", value=self.proj_size
            )

    @property
    def proj(self) -> int:
        return self.proj_size

    def fused_kernel(self) -> str | None:
        # on CPU in float32 PyTorch runs an LSTM without projection through oneDNN's fused kernel;
        # with a projection it falls back to matrix products
        return None if self.proj_size else ONEDNN_RNN

    def initial_state(self, n: int, dtype: Any) -> Any:
        return np.zeros((n, self.hidden_size), dtype=dtype)

    def work_elements(self, x: Shape) -> int:
        if not self.whole_sequence():
            return super().work_elements(x)
        # kernels/lstm.py's arrays, in elements per (N·T), H hidden and P the output width (P or H):
        # every cell's forward keeps its gates (4H), c and tanh c (2H), h (P) and, with a
        # projection, m (H); the backward, one cell at a time, adds the gates' factors (6H) and
        # their temporaries (2H), the gates' gradient (4H) and its time-ordered copy (4H), dL/dy
        # and dL/dh of every step (2P) and, with a projection, dL/dm (H)
        hid, out, proj = self.hidden_size, self.out_size, self.hidden_size if self.proj_size else 0
        kept = 6 * hid + out + proj
        backward = 16 * hid + 2 * out + proj
        return x[0] * x[1] * (kept * self.num_layers * self.directions + backward)

    def whole_sequence(self) -> bool:
        """Whether kernels/lstm.py runs the time loops: step and step_back are this class's own (a
        user's --impl that overrides either runs through them step by step)."""
        cls = type(self)
        return cls.step is LSTM.step and cls.step_back is LSTM.step_back

    def run(self, x: Any, p: dict[str, Any], reverse: bool) -> tuple[Any, Any]:
        if not self.whole_sequence():
            return super().run(x, p, reverse)
        from ..kernels.lstm import lstm_forward  # imported here: only verify needs the kernels

        return lstm_forward(x, p, reverse)

    def run_back(self, dys: Any, p: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        if not self.whole_sequence():
            return super().run_back(dys, p, cache)
        from ..kernels.lstm import lstm_backward

        return lstm_backward(dys, p, cache)

    def step(self, xi: Any, h: Any, c: Any, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        hid = self.hidden_size
        a = xi + self.hh(h, p)
        i, f, o = sigmoid(a[:, :hid]), sigmoid(a[:, hid : 2 * hid]), sigmoid(a[:, 3 * hid :])
        g = np.tanh(a[:, 2 * hid : 3 * hid])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        m = o * tc
        h_new = m @ p["weight_hr"].T if self.proj_size else m
        return h_new, c_new, (h, c, i, f, g, o, tc, m)

    def step_back(self, dh: Any, dc: Any, cache: Any, p: dict[str, Any], grads: dict[str, Any]) -> tuple[Any, Any, Any]:
        h, c, i, f, g, o, tc, m = cache
        if self.proj_size:
            grads["weight_hr"] += dh.T @ m
            dm = dh @ p["weight_hr"]
        else:
            dm = dh
        do = dm * tc
        dc = dc + dm * o * (1.0 - tc * tc)  # c_t reaches the loss through h_t and through c_{t+1}
        di, df, dg = dc * g, dc * c, dc * i
        dc_prev = dc * f  # the forget gate carries the cell state's gradient back one step
        da = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=1)
        self.hh_grads(da, h, grads)
        return da, da @ p["weight_hh"], dc_prev


@register
class GRU(_Recurrent):
    type_name = "gru"
    summary = "gated recurrent unit over (N, T, F): gates r, z, n; h = (1 - z)·n + z·h"
    args = _COMMON
    example = ([5, 3], {"hidden_size": 4})
    gates = 3
    thop_gate_ops = 4  # r·(W_hn h + b_hn) (1) and (1 - z)·n + z·h (3)
    ptflops_gate_ops = 7  # r's product, 3 gate sums, 3 for the new h

    def step(self, xi: Any, h: Any, state: Any, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        hid = self.hidden_size
        hh = self.hh(h, p)
        r = sigmoid(xi[:, :hid] + hh[:, :hid])
        z = sigmoid(xi[:, hid : 2 * hid] + hh[:, hid : 2 * hid])
        hn = hh[:, 2 * hid :]  # W_hn h + b_hn: the reset gate scales it, bias included
        n = np.tanh(xi[:, 2 * hid :] + r * hn)
        h_new = n + z * (h - n)  # (1 - z)·n + z·h
        return h_new, None, (h, hn, r, z, n)

    def step_back(self, dh: Any, dstate: Any, cache: Any, p: dict[str, Any], grads: dict[str, Any]) -> tuple[Any, Any, Any]:
        h, hn, r, z, n = cache
        dan = dh * (1.0 - z) * (1.0 - n * n)  # through n = tanh(...)
        dar = dan * hn * r * (1.0 - r)
        daz = dh * (h - n) * z * (1.0 - z)
        dxi = np.concatenate([dar, daz, dan], axis=1)
        dhh = np.concatenate([dar, daz, dan * r], axis=1)  # the n block reaches W_hn h through r
        self.hh_grads(dhh, h, grads)
        return dxi, dh * z + dhh @ p["weight_hh"], None


@register
class RNN(_Recurrent):
    type_name = "rnn"
    summary = "Elman recurrent layer over (N, T, F): h = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu)"
    args = (*_COMMON[:4], Arg("nonlinearity", Choice("tanh", "relu"), "tanh"), *_COMMON[4:])
    example = ([5, 3], {"hidden_size": 4})
    gates = 1
    thop_gate_ops = 0
    ptflops_gate_ops = 1  # the sum of the two products

    nonlinearity: str

    def step(self, xi: Any, h: Any, state: Any, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        a = xi + self.hh(h, p)
        h_new = np.tanh(a) if self.nonlinearity == "tanh" else np.maximum(a, 0)
        return h_new, None, (h, a, h_new)

    def step_back(self, dh: Any, dstate: Any, cache: Any, p: dict[str, Any], grads: dict[str, Any]) -> tuple[Any, Any, Any]:
        h, a, h_new = cache
        da = dh * (1.0 - h_new * h_new) if self.nonlinearity == "tanh" else dh * (a > 0)
        self.hh_grads(da, h, grads)
        return da, da @ p["weight_hh"], None
