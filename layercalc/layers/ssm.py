"""State-space models: mamba, Hugging Face's MambaMixer (the selective scan of Mamba-1).

On (N, T, E), with D = expand·E inner channels, n = d_state and R = dt_rank (⌈E/16⌉ when null):
    x, z = split(in_proj(u))                   (N, T, D) each
    a = silu(causal depthwise conv1d(x))       kernel d_conv, padded d_conv - 1 on the left
    dt, B, C = split(x_proj(a))                (R, n, n); x_proj has no bias
    Δ = softplus(dt_proj(dt))                  (N, T, D); dt_proj always has a bias
    h_t = exp(Δ_t·A) ⊙ h_{t-1} + Δ_t·B_t·a_t   (N, D, n) per step, A = -exp(A_log), h_{-1} = 0
    y_t = h_t·C_t + D ⊙ a_t
    out = out_proj(y ⊙ silu(z))
MACs are Hugging Face's slow path (the one that runs without CUDA kernels) as FlopCounterMode sees
it: the four projections, the convolution over its T + d_conv - 1 padded outputs, and C·h at every
step; the elementwise discretisation (exp, Δ·B·a, the decay) is not counted. Generation keeps a
constant state per sequence (the last d_conv inputs of the convolution and h), not a cache that
grows with the positions.
"""

from __future__ import annotations

from typing import Any

from ..lazy import np
from .base import Arg, Bool, Int, Layer, Opt, Saved, Shape, numel, register
from .counting import Grad
from .peers import ACT, BIAS, CONV, RECURRENT, row, rules

SOFTPLUS_THRESHOLD = 20.0  # F.softplus's default: above it, softplus(x) = x (and its slope 1)


def _sigmoid(v: Any) -> Any:
    """1 / (1 + e^-v), written with tanh so that no exp overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _silu_slope(v: Any, s: Any) -> Any:
    """d silu(v) / dv from v and s = sigmoid(v): s·(1 + v·(1 - s))."""
    return s * (1.0 + v * (1.0 - s))


@register
class Mamba(Layer):
    type_name = "mamba"
    summary = "Mamba's selective state-space mixer on (N, T, E) (Hugging Face's MambaMixer)"
    args = (
        Arg("d_state", Int(), 16, "n: the state size per inner channel"),
        Arg("d_conv", Int(), 4, "the causal depthwise convolution's kernel"),
        Arg("expand", Int(), 2, "D = expand·E inner channels"),
        Arg("dt_rank", Opt(Int()), None, "R; null = ⌈E/16⌉"),
        Arg("conv_bias", Bool(), True),
        Arg("bias", Bool(), False, "on in_proj and out_proj"),
    )
    shape_rule = "unchanged: (N, T, E)"
    params_rule = ("A_log D·n, D D, conv1d.weight D·d_conv (+ conv1d.bias D if conv_bias), in_proj.weight 2D·E"
                   " (+ 2D if bias), x_proj.weight (R + 2n)·D, dt_proj.weight D·R + dt_proj.bias D, out_proj.weight"
                   " E·D (+ E if bias); D = expand·E, n = d_state, R = dt_rank or ⌈E/16⌉")
    buffers_rule = "none; a generation keeps N·D·(d_conv + n) of state, whatever the sequence length, reported apart"
    macs_rule = ("N·[T·E·2D (in_proj) + (T + d_conv - 1)·D·d_conv (the padded depthwise conv) + T·D·(R + 2n)"
                 " (x_proj) + T·R·D (dt_proj) + T·D·n (C·h each step) + T·D·E (out_proj)]: Hugging Face's slow path;"
                 " the discretisation and the decay are elementwise, not counted")
    peer_rules = rules(
        torch="as layercalc",
        fvcore="as layercalc but dt_proj's matmul T·R·D without N (its matmul rule drops the batch of a broadcast operand)",
        thop="N·T·(E·2D + D·(R + 2n) + D·E): in_proj, x_proj and out_proj (conv1d and dt_proj run outside their modules)",
        ptflops=("as thop, + N·T·(2D + E) if bias, + N·T·D·n (torch.matmul for C·h) + 2·N·T·D (F.silu twice);"
                 " dt_proj's `@` is not counted"),
        torchinfo="N·(E·2D + D·(R + 2n) + D·E) (+ N·(2D + E) if bias): params × output.shape[0] of the modules called",
    )
    example = ([6, 8], {"d_state": 4})

    d_state: int
    d_conv: int
    expand: int
    dt_rank: int | None
    conv_bias: bool
    bias: bool

    # -- layout --
    def dims(self, x: Shape) -> tuple[int, int, int, int]:
        """(E, D, R, n) for input x: width, inner channels, dt rank, state size."""
        e = x[-1]
        return e, self.expand * e, self.dt_rank or -(-e // 16), self.d_state

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, 3, layout="(N, T, E)")
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        # in the order MambaMixer registers them (its own tensors first, then its modules')
        e, d, r, n = self.dims(x)
        shapes: dict[str, Shape] = {"A_log": (d, n), "D": (d,), "conv1d.weight": (d, 1, self.d_conv)}
        if self.conv_bias:
            shapes["conv1d.bias"] = (d,)
        shapes["in_proj.weight"] = (2 * d, e)
        if self.bias:
            shapes["in_proj.bias"] = (2 * d,)
        shapes.update({"x_proj.weight": (r + 2 * n, d), "dt_proj.weight": (d, r), "dt_proj.bias": (d,),
                       "out_proj.weight": (e, d)})
        if self.bias:
            shapes["out_proj.bias"] = (e,)
        return shapes

    def cache_shapes(self, x: Shape) -> dict[str, Shape]:
        # generation keeps the convolution's last d_conv inputs and the scan's state per sequence:
        # the same size at any position (Hugging Face's conv and recurrent states)
        _, d, _, n = self.dims(x)
        return {"conv_state": (x[0], d, self.d_conv), "ssm_state": (x[0], d, n)}

    # -- cost --
    def parts(self, x: Shape) -> dict[str, int]:
        """The forward's products by name, MACs over the whole batch."""
        batch, t = x[0], x[1]
        e, d, r, n = self.dims(x)
        return {"in_proj": batch * t * e * 2 * d, "conv1d": batch * (t + self.d_conv - 1) * d * self.d_conv,
                "x_proj": batch * t * d * (r + 2 * n), "dt_proj": batch * t * r * d, "scan": batch * t * d * n,
                "out_proj": batch * t * d * e}

    def macs(self, x: Shape, y: Shape) -> int:
        return sum(self.parts(x).values())

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        p = self.parts(x)
        batch, t = x[0], x[1]
        e, d, r, n = self.dims(x)
        products = p["in_proj"] + p["conv1d"] + p["x_proj"] + p["dt_proj"] + p["out_proj"]
        # fvcore's matmul rule reads dt_proj's (D, R) @ (N, R, T) as one (D, R) @ (R, T): N is lost
        fvcore = products - p["dt_proj"] + p["dt_proj"] // batch
        # the tools that hook modules see in_proj, x_proj and out_proj only: the convolution runs as
        # F.conv1d on conv1d's weight and dt_proj as `@` on its weight, outside their modules
        hooked = p["in_proj"] + p["x_proj"] + p["out_proj"]
        bias = batch * t * (2 * d + e) if self.bias else 0  # in_proj's and out_proj's outputs
        info = batch * (e * 2 * d + d * (r + 2 * n) + d * e + (2 * d + e if self.bias else 0))
        # ptflops' patched functions: torch.matmul (C·h each step) and F.silu (twice, N·T·D each)
        return [
            row(CONV, layercalc=products, torch=products, fvcore=fvcore, thop=hooked, ptflops=(hooked, 0),
                torchinfo=info),
            row(RECURRENT, layercalc=p["scan"], torch=p["scan"], fvcore=p["scan"], ptflops=(0, p["scan"])),
            row(BIAS, ptflops=(bias, 0)),
            row(ACT, ptflops=(0, 2 * batch * t * d)),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # each projection's weight gradient and input gradient cost its forward (in_proj's input
        # gradient only when the layer's input needs one); the convolution's likewise (its weight
        # gradient priced as an ungrouped one by FlopCounterMode); the dt_proj matmul and C·h give
        # both operands' gradients, neither a parameter's for C·h
        p = self.parts(x)
        d = self.dims(x)[1]
        grads = [Grad(p[k], weight=True) for k in ("in_proj", "x_proj", "dt_proj", "out_proj")]
        grads += [Grad(p[k], weight=False) for k in ("x_proj", "dt_proj", "out_proj")]
        grads += [Grad(p["conv1d"], weight=True, groups=d), Grad(p["conv1d"], weight=False)]
        grads += [Grad(p["scan"], weight=False), Grad(p["scan"], weight=False)]
        return grads + ([Grad(p["in_proj"], weight=False)] if input_grad else [])

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # the slow path's autograd keeps: the input; x and z; the conv's output and its silu;
        # x_proj's output (dt, B, C); Δ before and after softplus; exp(Δ·A), Δ·B and every step's
        # state (each (N, T, D, n)); y and silu(z) for the gate; out_proj's input
        batch, t = x[0], x[1]
        _, d, r, n = self.dims(x)
        inner, state = Saved(batch * t * d, d), Saved(batch * t * d * n, 0)
        return [Saved(numel(x), x[-1], tensor="x"), inner, inner, inner, inner, Saved(batch * t * (r + 2 * n), r + 2 * n),
                inner, inner, state, state, state, inner, inner, inner]

    # -- NumPy forward and backward through time --
    def python_steps(self, x: Shape) -> int:
        # the scan's time loop, forward and reversed in the backward
        return 2 * x[1]

    def work_elements(self, x: Shape) -> int:
        # kept for the backward: exp(Δ·A), Δ·B·a and the states, (N, T, D, n) each, and about ten
        # (N, T, D) arrays; the backward adds the states' gradient and two temporaries of that size
        batch, t = x[0], x[1]
        _, d, r, n = self.dims(x)
        return 6 * batch * t * d * n + 12 * batch * t * d + 2 * batch * t * (r + 2 * n)

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        e, d, r, n = self.dims(x.shape)
        xz = x @ params["in_proj.weight"].T
        if self.bias:
            xz = xz + params["in_proj.bias"]
        xs, z = xz[..., :d], xz[..., d:]
        u = self.conv(xs, params)
        s_u = _sigmoid(u)
        a = u * s_u
        dbl = a @ params["x_proj.weight"].T
        dtr, b, c = dbl[..., :r], dbl[..., r : r + n], dbl[..., r + n :]
        dtl = dtr @ params["dt_proj.weight"].T + params["dt_proj.bias"]
        dt = np.where(dtl > SOFTPLUS_THRESHOLD, dtl, np.logaddexp(0, np.minimum(dtl, SOFTPLUS_THRESHOLD)))
        a_mat = -np.exp(params["A_log"])
        decay = np.exp(dt[..., None] * a_mat)  # (N, T, D, n)
        drive = (dt * a)[..., None] * b[:, :, None, :]
        states = np.empty_like(decay)
        h = np.zeros_like(decay[:, 0])
        for t in range(x.shape[1]):  # h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t a_t
            h = decay[:, t] * h + drive[:, t]
            states[:, t] = h
        y = np.einsum("ntdk,ntk->ntd", states, c) + a * params["D"]
        s_z = _sigmoid(z)
        gated = y * (z * s_z)
        out = gated @ params["out_proj.weight"].T
        if self.bias:
            out = out + params["out_proj.bias"]
        return out, (x, xs, z, u, s_u, a, dtr, b, c, dtl, dt, a_mat, decay, states, y, s_z, gated)

    def conv(self, xs: Any, params: dict[str, Any]) -> Any:
        """The causal depthwise convolution of (N, T, D): output t reads inputs t - d_conv + 1 .. t."""
        w, k = params["conv1d.weight"][:, 0, :], self.d_conv
        padded = _left_padded(xs, k - 1)
        length = xs.shape[1]
        u = sum(padded[:, j : j + length] * w[:, j] for j in range(k))
        return u + params["conv1d.bias"] if self.conv_bias else u

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        x, xs, z, u, s_u, a, dtr, b, c, dtl, dt, a_mat, decay, states, y, s_z, gated = cache
        grads: dict[str, Any] = {"out_proj.weight": _flat(dy).T @ _flat(gated)}
        if self.bias:
            grads["out_proj.bias"] = _flat(dy).sum(axis=0)
        dgated = dy @ params["out_proj.weight"]
        dys = dgated * (z * s_z)  # through y ⊙ silu(z)
        dz = dgated * y * _silu_slope(z, s_z)
        grads["D"] = (dys * a).sum(axis=(0, 1))
        da = dys * params["D"]
        dc = np.einsum("ntd,ntdk->ntk", dys, states)
        dstates = self.scan_back(dys[..., None] * c[:, :, None, :], decay)
        # h_t = decay_t ⊙ h_{t-1} + drive_t: drive_t gets dL/dh_t, decay_t gets dL/dh_t ⊙ h_{t-1}
        previous = np.concatenate([np.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
        dlog = dstates * previous * decay  # dL/d(Δ·A), through exp
        dbx = (dstates * b[:, :, None, :]).sum(axis=-1)  # dL/d(Δ·a) from drive = (Δ·a) ⊗ B
        db = np.einsum("ntdk,ntd->ntk", dstates, dt * a)
        ddt = dbx * a + (dlog * a_mat).sum(axis=-1)
        da = da + dbx * dt
        grads["A_log"] = (dlog * dt[..., None]).sum(axis=(0, 1)) * a_mat  # A = -exp(A_log): dA/dA_log = A
        ddtl = ddt * np.where(dtl > SOFTPLUS_THRESHOLD, 1.0, _sigmoid(dtl)).astype(ddt.dtype)
        grads["dt_proj.weight"] = _flat(ddtl).T @ _flat(dtr)
        grads["dt_proj.bias"] = _flat(ddtl).sum(axis=0)
        ddbl = np.concatenate([ddtl @ params["dt_proj.weight"], db, dc], axis=-1)
        grads["x_proj.weight"] = _flat(ddbl).T @ _flat(a)
        du = (da + ddbl @ params["x_proj.weight"]) * _silu_slope(u, s_u)
        dxs = self.conv_back(du, xs, params, grads)
        dxz = np.concatenate([dxs, dz], axis=-1)
        grads["in_proj.weight"] = _flat(dxz).T @ _flat(x)
        if self.bias:
            grads["in_proj.bias"] = _flat(dxz).sum(axis=0)
        return dxz @ params["in_proj.weight"], grads

    @staticmethod
    def scan_back(dh_out: Any, decay: Any) -> Any:
        """dL/dh_t for every step from the gradient reaching each h_t through y_t: the reverse scan
        g_t = dh_out_t + decay_{t+1} ⊙ g_{t+1} (h_t feeds y_t and, decayed, h_{t+1})."""
        dstates = np.empty_like(dh_out)
        g = np.zeros_like(dh_out[:, 0])
        for t in reversed(range(dh_out.shape[1])):
            g = dh_out[:, t] + g
            dstates[:, t] = g
            g = g * decay[:, t]
        return dstates

    def conv_back(self, du: Any, xs: Any, params: dict[str, Any], grads: dict[str, Any]) -> Any:
        """dL/dx of the causal convolution from dL/du; adds the kernel's (and bias's) gradients to grads."""
        w, k = params["conv1d.weight"][:, 0, :], self.d_conv
        length = xs.shape[1]
        padded = _left_padded(xs, k - 1)
        dpadded = np.zeros_like(padded)
        dw = np.empty_like(params["conv1d.weight"])
        for j in range(k):  # output t read padded[t + j] with weight w[:, j]
            dw[:, 0, j] = (du * padded[:, j : j + length]).sum(axis=(0, 1))
            dpadded[:, j : j + length] += du * w[:, j]
        grads["conv1d.weight"] = dw
        if self.conv_bias:
            grads["conv1d.bias"] = du.sum(axis=(0, 1))
        return dpadded[:, k - 1 :]


def _left_padded(t: Any, pad: int) -> Any:
    """(N, T, D) with `pad` zero steps before the first: (N, pad + T, D)."""
    zeros = np.zeros((t.shape[0], pad, t.shape[2]), dtype=t.dtype)
    return np.concatenate([zeros, t], axis=1)


def _flat(t: Any) -> Any:
    """(N, T, F) -> (N·T, F)."""
    return t.reshape(-1, t.shape[-1])
