"""Self-attention: multiheadattention (nn.MultiheadAttention), attention (Llama-style, grouped-query,
rotary) and transformerencoderlayer (nn.TransformerEncoderLayer, composed of the catalog's layers).

Sequences are batch first, (N, T, E). Scaled dot-product attention per head, q, k, v of (N, h, T, d):
    S = q kᵀ / √d,  A = softmax(S + M) over keys (M = -inf above the diagonal when causal),  o = A v.
MACs: the projections as linear layers, plus q kᵀ and A v, each N·h·T·T·d, counted in full even
when a causal mask discards half of the products (the kernels compute them).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import SchemaError, ShapeError
from ..lazy import np
from .activation import GELU, ReLU
from .base import Arg, Bool, Choice, Float, Int, Layer, Opt, Saved, Shape, _bad, fmt_shape, numel, register
from .linear import Linear
from .norm import LayerNorm
from .cost import CostModel
from .counting import ENCODER_FAST_PATH, MHA_FAST_PATH, SDPA, Grad
from .peers import ATTN, BIAS, CONV, row, rules


def _sequence(layer: Layer, x: Shape) -> None:
    layer.expect_rank(x, 3, layout="(N, T, E)")


# -- the shared core: scaled dot-product attention and its backward -----------------------------


class _Attends(Layer):
    """Scaled dot-product attention over heads; a user's --impl may override attend / attend_backward."""

    causal: bool

    def window(self) -> int | None:
        """How many of the latest positions (itself included) a query sees; None: all (or all past ones)."""
        return None

    def hidden(self, length: int) -> Any:
        """(T, T) bool, True where query i may not see key j: the future when causal (j > i), and keys
        the sliding window has passed (i - j >= W); None when every query sees every key."""
        w = self.window()
        if not self.causal and w is None:
            return None
        i, j = np.arange(length)[:, None], np.arange(length)[None, :]
        out = j > i if self.causal else np.zeros((length, length), dtype=bool)
        return out | (i - j >= w) if w is not None else out

    def attend(self, q: Any, k: Any, v: Any) -> tuple[Any, Any]:
        """o = softmax(q kᵀ/√d + mask) v for (N, h, T, d) arrays; returns (o, cache)."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        s = (q @ k.swapaxes(-1, -2)) * scale  # (N, h, T, T): query rows, key columns
        masked = s
        hidden = self.hidden(s.shape[-1])
        if hidden is not None:  # a hidden key gets weight exactly 0
            masked = np.where(hidden, -np.inf, s)
        e = np.exp(masked - masked.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)
        return a @ v, (q, k, v, s, a, scale)

    def attend_backward(self, do: Any, cache: Any) -> tuple[Any, Any, Any]:
        """(dq, dk, dv) from do = dL/do."""
        q, k, v, _, a, scale = cache
        dv = a.swapaxes(-1, -2) @ do
        da = do @ v.swapaxes(-1, -2)
        # softmax's Jacobian diag(a) - a aᵀ per row: ds = a ⊙ (da - Σ_j da·a); masked entries
        # have a = 0, so the mask's zeros carry through to ds
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
        return (ds @ k) * scale, (ds.swapaxes(-1, -2) @ q) * scale, dv

    def cache_shapes(self, x: Shape) -> dict[str, Shape]:
        # a decoder generating token by token keeps every past key and value
        # (a sliding window keeps only the last W)
        if not self.causal:
            return {}
        kv, d = self.kv_layout(x)
        length = x[1] if self.window() is None else min(x[1], self.window())
        return {"k": (x[0], kv, length, d), "v": (x[0], kv, length, d)}

    def kv_layout(self, x: Shape) -> tuple[int, int]:
        """(key/value heads, head_dim) for input x."""
        raise NotImplementedError

    def causal_core(self, x: Shape) -> int:
        """q kᵀ and A v over the pairs the mask leaves (Megatron-LM's and FlashAttention's count):
        2·N·h·pairs·d."""
        pairs = visible_pairs(x[1], self.causal, self.window())
        return 2 * x[0] * self.num_heads * pairs * self.kv_layout(x)[1]  # type: ignore[attr-defined]

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # the projections' input; q, k, v; the softmax of the scores (and, with dropout on them, its
        # mask and its output); the heads' output, which is the output projection's input.
        # FlashAttention keeps no T×T matrix: its backward recomputes the scores block by block.
        n, length = x[0], x[1]
        h, (kv, d) = self.num_heads, self.kv_layout(x)  # type: ignore[attr-defined]
        heads = [Saved(n * length * h * d, 0), Saved(n * length * kv * d, 0), Saved(n * length * kv * d, 0)]
        saved = [Saved(numel(x), x[-1]), *heads, Saved(n * length * h * d, 0)]
        if not flash:
            scores = n * h * length * length
            saved.append(Saved(scores, 0))
            if getattr(self, "dropout", 0.0) > 0:
                saved += [Saved(scores, 0, mask=True), Saved(scores, 0)]
        return saved

    def work_elements(self, x: Shape) -> int:
        # per head, the T×T scores and their softmax kept for backward and, at the backward's peak,
        # three more of that size (dA, dS and a product); about ten (N, T, h·d) projections
        # (q, k, v, the repeated keys and values, their gradients)
        n, length = x[0], x[1]
        h = self.num_heads  # type: ignore[attr-defined]
        d = self.kv_layout(x)[1]
        return 5 * n * h * length * length + 10 * n * length * h * d


def _heads(t: Any, h: int) -> Any:
    """(N, T, h·d) -> (N, h, T, d)."""
    n, length, width = t.shape
    return t.reshape(n, length, h, width // h).transpose(0, 2, 1, 3)


def _merge(t: Any) -> Any:
    """(N, h, T, d) -> (N, T, h·d)."""
    n, h, length, d = t.shape
    return t.transpose(0, 2, 1, 3).reshape(n, length, h * d)


def _core_macs(n: int, h: int, length: int, d: int) -> int:
    """q kᵀ and A v: each N·h·T·T·d."""
    return 2 * n * h * length * length * d


def visible_pairs(length: int, causal: bool, window: int | None) -> int:
    """The (query, key) pairs a mask leaves: T·T; T(T+1)/2 when causal; Σ_i min(i, W) over
    positions i = 1..T with a sliding window of W (itself included)."""
    if not causal:
        return length * length
    if window is None or window >= length:
        return length * (length + 1) // 2
    return window * (window + 1) // 2 + (length - window) * window


# -- multiheadattention ---------------------------------------------------------------------------


@register
class MultiheadAttention(_Attends):
    type_name = "multiheadattention"
    summary = "self-attention as nn.MultiheadAttention(E, num_heads, batch_first=True): packed q, k, v projection"
    args = (
        Arg("num_heads", Int()),
        Arg("bias", Bool(), True),
        Arg("dropout", Float(low=0.0, high=1.0), 0.0, "on the attention weights while training; none in eval"),
        Arg("causal", Bool(), False, "mask passed at forward time (attn_mask, is_causal=True)"),
        Arg("embed_dim", Opt(Int()), None, "inferred from the input"),
    )
    shape_rule = "unchanged: (N, T, E); num_heads divides E; embed_dim must equal E"
    params_rule = "in_proj_weight 3E·E, out_proj.weight E·E, + in_proj_bias 3E and out_proj.bias E if bias: 4E² + 4E"
    buffers_rule = "none; with causal, a decoder's KV cache 2·N·num_heads·T·d is reported apart"
    macs_rule = ("4·N·T·E² (the q, k, v and output projections) + 2·N·num_heads·T·T·d (q·kᵀ and A·v), d = E / num_heads;"
                 " causal masks half of the products but the count is the full one")
    peer_rules = rules(
        torch=("4·N·T·E² (the projections), not counted when the fused eval fast path runs (bias, an even num_heads,"
               " not causal); the attention products never (a CPU kernel it has no rule for)"),
        fvcore="as torch",
        ptflops=("its own hook: 4·N·T·E² + N·(T·E + num_heads·T·T·(2d + 1)) (scaling, q·kᵀ, softmax, A·v)"
                 " + N·(3·T·E if bias + T·E) for the biases"),
    )
    inert_args = ("dropout",)
    example = ([4, 8], {"num_heads": 2})

    num_heads: int
    bias: bool
    dropout: float
    embed_dim: int | None

    def output_shape(self, x: Shape) -> Shape:
        _sequence(self, x)
        self.expect_size("embed_dim", self.embed_dim, x[2])
        if x[2] % self.num_heads:
            raise ShapeError(f"num_heads {self.num_heads} does not divide the embedding width {x[2]} of "
                             f"{fmt_shape(x)}", value=self.num_heads)
        return x

    def kv_layout(self, x: Shape) -> tuple[int, int]:
        return self.num_heads, x[2] // self.num_heads

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        e = x[2]
        shapes: dict[str, Shape] = {"in_proj_weight": (3 * e, e)}
        if self.bias:
            shapes["in_proj_bias"] = (3 * e,)
        shapes["out_proj.weight"] = (e, e)
        if self.bias:
            shapes["out_proj.bias"] = (e,)
        return shapes

    def projection_macs(self, x: Shape) -> int:
        """The packed q, k, v projection (3E outputs) and the output projection: 4·N·T·E²."""
        return 4 * x[0] * x[1] * x[2] * x[2]

    def macs(self, x: Shape, y: Shape) -> int:
        n, length, e = x
        return self.projection_macs(x) + _core_macs(n, self.num_heads, length, e // self.num_heads)

    def fast_path(self) -> bool:
        """Whether PyTorch's eval, no-grad fast path (one fused op, invisible to the counters) runs it.

        It needs an even head count and an in-projection bias, and takes no float mask (causal).
        """
        return self.bias and self.num_heads % 2 == 0 and not self.causal

    def fused_kernel(self) -> str | None:
        return MHA_FAST_PATH if self.fast_path() else None

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, length, e = x
        h = self.num_heads
        proj, core = self.projection_macs(x), _core_macs(n, h, length, e // h)
        # FlopCounterMode and fvcore see the projections' matmuls (unless the fast path runs);
        # neither sees scaled_dot_product_attention's CPU kernel
        # ptflops' own nn.MultiheadAttention hook, per sample: T·E for scaling q, the projections,
        # 3·T·E in-projection bias, per head T·T·d (q kᵀ) + T·T (softmax) + T·T·d (A v), and
        # T·E·(E + 1) for the output projection ("bias always enabled"); times N
        ptf_bias = n * (3 * length * e * self.bias + length * e)
        ptf_attn = n * (length * e + h * length * length * (2 * (e // h) + 1))
        # thop and torchinfo have no rule for it (and its out_proj runs as a function, not a module)
        return [
            row(CONV, layercalc=proj, torch=proj, fvcore=proj, ptflops=(proj, 0)),
            row(ATTN, layercalc=core, ptflops=(ptf_attn, 0), causal=self.causal_core(x)),
            row(BIAS, ptflops=(ptf_bias, 0)),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        n, length, e = x
        # in_proj: ∇W always, ∇x when needed; out_proj: ∇W and ∇(its input) always; the attention
        # products: dq = ds k, dk = dsᵀ q, dA = do vᵀ, dv = Aᵀ do, twice the forward's two products
        in_proj, out_proj = 3 * n * length * e * e, n * length * e * e
        core = 2 * _core_macs(n, self.num_heads, length, e // self.num_heads)
        return _projection_grads(in_proj, out_proj, input_grad) + [
            Grad(core, weight=False, kernel=SDPA, masked=2 * self.causal_core(x))]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        h = self.num_heads
        qkv = x @ params["in_proj_weight"].T
        if self.bias:
            qkv = qkv + params["in_proj_bias"]
        q, k, v = np.split(qkv, 3, axis=-1)
        o, core = self.attend(_heads(q, h), _heads(k, h), _heads(v, h))
        merged = _merge(o)
        y = merged @ params["out_proj.weight"].T
        if self.bias:
            y = y + params["out_proj.bias"]
        return y, (x, merged, core)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        x, merged, core = cache
        h = self.num_heads
        grads: dict[str, Any] = {"out_proj.weight": _flat(dy).T @ _flat(merged)}
        dq, dk, dv = self.attend_backward(_heads(dy @ params["out_proj.weight"], h), core)
        dqkv = np.concatenate([_merge(dq), _merge(dk), _merge(dv)], axis=-1)
        grads["in_proj_weight"] = _flat(dqkv).T @ _flat(x)
        if self.bias:
            grads["in_proj_bias"] = _flat(dqkv).sum(axis=0)
            grads["out_proj.bias"] = _flat(dy).sum(axis=0)
        return dqkv @ params["in_proj_weight"], grads


def _projection_grads(inputs: int, output: int, input_grad: bool) -> list[Grad]:
    """The projections' gradients from their forward MACs: the input projections' dL/dW, and their
    dL/dx when the layer's input needs it; the output projection's dL/dW and dL/d(its input)."""
    grads = [Grad(inputs, weight=True)] + ([Grad(inputs, weight=False)] if input_grad else [])
    return grads + [Grad(output, weight=True), Grad(output, weight=False)]


def _flat(t: Any) -> Any:
    """(N, T, F) -> (N·T, F)."""
    return t.reshape(-1, t.shape[-1])


# -- attention (Llama-style) ---------------------------------------------------------------------


def rope_tables(length: int, d: int, theta: float, dtype: Any = "float64") -> tuple[Any, Any]:
    """cos and sin of shape (T, d): position t, frequency theta^(-2i/d) for i < d/2, repeated twice;
    computed in float64 and rounded once to the activations' dtype (float32 tables keep a float32 run float32)."""
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.outer(np.arange(length, dtype=np.float64), inv_freq)
    emb = np.concatenate([angles, angles], axis=-1)
    return np.cos(emb).astype(dtype), np.sin(emb).astype(dtype)


def rotate_half(t: Any) -> Any:
    """[x1, x2] -> [-x2, x1] on the last dim (Hugging Face's convention: halves, not pairs)."""
    half = t.shape[-1] // 2
    return np.concatenate([-t[..., half:], t[..., :half]], axis=-1)


def rotate_half_transposed(t: Any) -> Any:
    """The transpose of rotate_half: [y1, y2] -> [y2, -y1]."""
    half = t.shape[-1] // 2
    return np.concatenate([t[..., half:], -t[..., :half]], axis=-1)


PROJECTIONS = ("q", "k", "v", "o")


class Projections:
    """true, false, or the list of projections (q, k, v, o) that have a bias, each at most once."""

    def __call__(self, v: Any) -> bool | tuple[str, ...]:
        if isinstance(v, bool):
            return v
        if not isinstance(v, list) or not v or not all(isinstance(p, str) for p in v):
            raise _bad("expected true, false or a list of the projections q, k, v, o", v)
        unknown = [p for p in v if p not in PROJECTIONS]
        if unknown:
            raise _bad(f"expected projections among q, k, v, o, not {unknown[0]!r}", v)
        if len(set(v)) != len(v):
            twice = next(p for p in v if v.count(p) > 1)
            raise SchemaError(f"projection {twice} is listed twice in [{', '.join(v)}]", value=v)
        return tuple(v)


def _rotate(t: Any, cos: Any, sin: Any) -> Any:
    """Rope on the first r = cos.shape[-1] dims of (N, h, T, d): t·cos + rotate_half(t)·sin; the rest pass."""
    r = cos.shape[-1]
    rot = t[..., :r]
    return np.concatenate([rot * cos + rotate_half(rot) * sin, t[..., r:]], axis=-1)


def _rotate_backward(dy: Any, cos: Any, sin: Any) -> Any:
    """_rotate's input gradient: y = t·cos + R t·sin  =>  dt = dy·cos + Rᵀ(dy·sin) on the rotated dims."""
    r = cos.shape[-1]
    rot = dy[..., :r]
    return np.concatenate([rot * cos + rotate_half_transposed(rot * sin), dy[..., r:]], axis=-1)


@register
class Attention(_Attends):
    type_name = "attention"
    summary = "decoder self-attention (Llama): q, k, v, o projections, grouped-query, rotary, causal"
    args = (
        Arg("num_heads", Int()),
        Arg("num_kv_heads", Opt(Int()), None, "= num_heads; fewer = grouped-query attention"),
        Arg("head_dim", Opt(Int()), None, "= E / num_heads"),
        Arg("bias", Projections(), False, "on q, k, v and o, or a list of those that have one: [q, k, v] (Qwen2)"),
        Arg("causal", Bool(), True),
        Arg("rope", Bool(), False, "rotary position embedding of q and k"),
        Arg("rope_theta", Float(low=1.0), 10000.0),
        Arg("partial_rotary_factor", Float(low=0.0, high=1.0), 1.0,
            "the fraction of head_dim rope rotates (the first int(d·factor) dims; GPT-NeoX 0.25)"),
        Arg("sliding_window", Opt(Int()), None, "each position attends to the last W positions, itself included"),
    )
    shape_rule = ("unchanged: (N, T, E); d = head_dim, or E / num_heads (num_heads divides E); kv = num_kv_heads"
                  " (null = num_heads) divides num_heads; rope rotates int(d·partial_rotary_factor) dims, an even"
                  " number; sliding_window only with causal")
    params_rule = ("q_proj.weight E·h·d, k_proj.weight and v_proj.weight E·kv·d each, o_proj.weight h·d·E, + biases h·d,"
                   " kv·d, kv·d and E if bias (those listed, if a list); h = num_heads")
    buffers_rule = ("none (rope's inverse frequencies are not state here); with causal, a KV cache 2·N·kv·T·d is"
                    " reported apart, T capped at sliding_window")
    macs_rule = ("N·T·(E·h·d + 2·E·kv·d + h·d·E) (the four projections) + 2·N·h·T·T·d (q·kᵀ and A·v: grouped-query"
                 " heads repeat k and v); causal and sliding_window mask products but the count is the full one"
                 " (under --convention causal, only the pairs the mask leaves)")
    peer_rules = rules(
        torch="the projections N·T·(E·h·d + 2·E·kv·d + h·d·E); the attention products, rope and repeat_kv not counted",
        fvcore="as torch", thop="as torch",
        ptflops="as torch, + N·T·(h·d + 2·kv·d + E) for the biases (the biased projections' widths)",
        torchinfo=("N·(E·h·d + 2·E·kv·d + h·d·E) (params × output.shape[0]: T is lost), + N·(h·d + 2·kv·d + E)"
                   " for the biases (the biased projections' widths)"),
    )
    inert_args = ("rope_theta", "partial_rotary_factor")
    example = ([4, 8], {"num_heads": 2})

    num_heads: int
    num_kv_heads: int | None
    head_dim: int | None
    bias: bool | tuple[str, ...]
    rope: bool
    rope_theta: float
    partial_rotary_factor: float
    sliding_window: int | None

    def window(self) -> int | None:
        return self.sliding_window

    def rotary_dims(self, x: Shape) -> int:
        """How many leading dims of each head rope rotates: int(d·partial_rotary_factor), as Hugging Face."""
        return int(self.dim(x) * self.partial_rotary_factor)

    def biased(self, projection: str) -> bool:
        """Whether the projection ("q_proj", ...) has a bias."""
        return self.bias is True or (isinstance(self.bias, tuple) and projection[0] in self.bias)

    @property
    def kv_heads(self) -> int:
        """Key/value heads (num_heads unless grouped-query)."""
        return self.num_kv_heads or self.num_heads

    def dim(self, x: Shape) -> int:
        """The head dimension d for input x."""
        return self.head_dim or x[2] // self.num_heads

    def output_shape(self, x: Shape) -> Shape:
        _sequence(self, x)
        if self.head_dim is None and x[2] % self.num_heads:
            raise ShapeError(f"num_heads {self.num_heads} does not divide the embedding width {x[2]} of "
                             f"{fmt_shape(x)} (or give head_dim)", value=self.num_heads)
        if self.num_heads % self.kv_heads:
            raise ShapeError(f"num_kv_heads {self.kv_heads} does not divide num_heads {self.num_heads}",
                             value=self.kv_heads)
        if self.rope and self.rotary_dims(x) % 2:
            what = (f"head_dim {self.dim(x)}" if self.partial_rotary_factor == 1.0 else
                    f"int(head_dim {self.dim(x)} · partial_rotary_factor {self.partial_rotary_factor:g}) = "
                    f"{self.rotary_dims(x)}")
            raise ShapeError(f"rope rotates pairs of dims: {what} is odd", value=self.dim(x))
        if not self.rope and self.partial_rotary_factor != 1.0:
            raise ShapeError(f"partial_rotary_factor {self.partial_rotary_factor:g} needs rope: true",
                             value=self.partial_rotary_factor)
        if self.sliding_window is not None and not self.causal:
            raise ShapeError(f"sliding_window {self.sliding_window} needs causal: true (it keeps the last W positions)",
                             value=self.sliding_window)
        return x

    def kv_layout(self, x: Shape) -> tuple[int, int]:
        return self.kv_heads, self.dim(x)

    def _projections(self, x: Shape) -> dict[str, tuple[int, int]]:
        """(in, out) features of q_proj, k_proj, v_proj, o_proj."""
        e, hd, kvd = x[2], self.num_heads * self.dim(x), self.kv_heads * self.dim(x)
        return {"q_proj": (e, hd), "k_proj": (e, kvd), "v_proj": (e, kvd), "o_proj": (hd, e)}

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {}
        for name, (fan_in, out) in self._projections(x).items():
            shapes[f"{name}.weight"] = (out, fan_in)
            if self.biased(name):
                shapes[f"{name}.bias"] = (out,)
        return shapes

    def projection_macs(self, x: Shape) -> int:
        """E·h·d + 2·E·kv·d + h·d·E per token: the four projections as linear layers."""
        return x[0] * x[1] * sum(i * o for i, o in self._projections(x).values())

    def macs(self, x: Shape, y: Shape) -> int:
        # grouped-query attention repeats each k, v head for its query heads: h heads of products
        return self.projection_macs(x) + _core_macs(x[0], self.num_heads, x[1], self.dim(x))

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, length = x[0], x[1]
        proj = self.projection_macs(x)
        outs = sum(o for name, (_, o) in self._projections(x).items() if self.biased(name))
        weights = sum(i * o for i, o in self._projections(x).values())
        # four nn.Linear modules, each counted as the tools count linear layers; torchinfo charges
        # params × batch (the sequence length is lost); nobody sees scaled_dot_product_attention's
        # CPU kernel, rope's elementwise products or repeat_kv's copies
        return [
            row(CONV, layercalc=proj, torch=proj, fvcore=proj, thop=proj, ptflops=(proj, 0), torchinfo=n * weights),
            row(ATTN, layercalc=_core_macs(n, self.num_heads, length, self.dim(x)), causal=self.causal_core(x)),
            row(BIAS, ptflops=(n * length * outs, 0), torchinfo=n * outs),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        n, length = x[0], x[1]
        p = self._projections(x)
        qkv = n * length * sum(i * o for name, (i, o) in p.items() if name != "o_proj")
        o_proj = n * length * p["o_proj"][0] * p["o_proj"][1]
        core = 2 * _core_macs(n, self.num_heads, length, self.dim(x))
        return _projection_grads(qkv, o_proj, input_grad) + [
            Grad(core, weight=False, kernel=SDPA, masked=2 * self.causal_core(x))]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        h, kv = self.num_heads, self.kv_heads
        proj = {}
        for name in ("q_proj", "k_proj", "v_proj"):
            proj[name] = x @ params[f"{name}.weight"].T
            if self.biased(name):
                proj[name] = proj[name] + params[f"{name}.bias"]
        q, k, v = _heads(proj["q_proj"], h), _heads(proj["k_proj"], kv), _heads(proj["v_proj"], kv)
        tables = None
        if self.rope:  # the first r dims: q·cos + rotate_half(q)·sin, position by position; the rest pass
            r = self.rotary_dims(x.shape)
            cos, sin = tables = rope_tables(x.shape[1], r, self.rope_theta, x.dtype)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        # repeat_kv: query head i reads key/value head i // (h / kv)
        group = h // kv
        o, core = self.attend(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1))
        merged = _merge(o)
        y = merged @ params["o_proj.weight"].T
        if self.biased("o_proj"):
            y = y + params["o_proj.bias"]
        return y, (x, merged, core, tables)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        x, merged, core, tables = cache
        h, kv = self.num_heads, self.kv_heads
        group = h // kv
        grads: dict[str, Any] = {"o_proj.weight": _flat(dy).T @ _flat(merged)}
        if self.biased("o_proj"):
            grads["o_proj.bias"] = _flat(dy).sum(axis=0)
        dq, dk, dv = self.attend_backward(_heads(dy @ params["o_proj.weight"], h), core)
        # repeat_kv's backward: each k, v head collects the gradients of the query heads that read it
        n, _, length, d = dk.shape
        dk = dk.reshape(n, kv, group, length, d).sum(axis=2)
        dv = dv.reshape(n, kv, group, length, d).sum(axis=2)
        if tables is not None:
            dq, dk = _rotate_backward(dq, *tables), _rotate_backward(dk, *tables)
        dx = np.zeros_like(x)
        for name, g in (("q_proj", dq), ("k_proj", dk), ("v_proj", dv)):
            flat = _merge(g)
            grads[f"{name}.weight"] = _flat(flat).T @ _flat(x)
            if self.biased(name):
                grads[f"{name}.bias"] = _flat(flat).sum(axis=0)
            dx += flat @ params[f"{name}.weight"]
        return dx, grads


# -- transformerencoderlayer ------------------------------------------------------------------------


@register
class TransformerEncoderLayer(Layer):
    """nn.TransformerEncoderLayer(batch_first=True), built from the catalog's own layer objects.

    Post-norm (default):  h = norm1(x + self_attn(x));   y = norm2(h + linear2(act(linear1(h))))
    Pre-norm (norm_first): h = x + self_attn(norm1(x));   y = h + linear2(act(linear1(norm2(h))))
    Dropout is the identity in eval and in verify. Parameters carry PyTorch's state-dict names.
    """

    type_name = "transformerencoderlayer"
    summary = "nn.TransformerEncoderLayer(batch_first=True): self-attention and a 2-layer MLP, residual + layernorm"
    args = (
        Arg("nhead", Int()),
        Arg("dim_feedforward", Int(), 2048),
        Arg("dropout", Float(low=0.0, high=1.0), 0.1, "no effect in eval and verify"),
        Arg("activation", Choice("relu", "gelu"), "relu"),
        Arg("layer_norm_eps", Float(low=0.0), 1e-5),
        Arg("norm_first", Bool(), False),
        Arg("bias", Bool(), True, "on the linear layers, the attention and the layernorms"),
        Arg("causal", Bool(), False, "mask passed at forward time (src_mask, is_causal=True)"),
        Arg("d_model", Opt(Int()), None, "inferred from the input"),
    )
    shape_rule = ("unchanged: (N, T, E); nhead divides E; d_model must equal E; norm_first puts norm1 and norm2"
                  " before the attention and the MLP, which changes no forward count (the backward's, as the"
                  " attention's input then needs a gradient)")
    params_rule = ("self_attn 4E² + 4E (as multiheadattention), linear1 E·dim_feedforward + dim_feedforward, linear2"
                   " dim_feedforward·E + E, norm1 and norm2 2E each; the bias terms only if bias")
    buffers_rule = "none; with causal, the attention's KV cache is reported apart"
    macs_rule = ("4·N·T·E² + 2·N·nhead·T·T·(E / nhead) (self_attn, causal or not) + 2·N·T·E·dim_feedforward"
                 " (linear1 and linear2)")
    peer_rules = rules(
        torch=("self_attn, linear1 and linear2 as torch counts multiheadattention and linear; nothing when the fused"
               " eval fast path runs (bias and an even nhead)"),
        fvcore="self_attn, linear1, linear2, norm1 and norm2 as fvcore counts multiheadattention, linear and layernorm",
        thop="linear1, linear2, norm1 and norm2 as thop counts linear and layernorm (self_attn not counted)",
        ptflops="self_attn, linear1, linear2, norm1 and norm2 as ptflops counts multiheadattention, linear and layernorm",
        torchinfo="linear1, linear2, norm1 and norm2 as torchinfo counts linear and layernorm (self_attn not counted)",
    )
    inert_args = ("dropout", "activation", "layer_norm_eps")
    example = ([4, 8], {"nhead": 2, "dim_feedforward": 16})

    nhead: int
    dim_feedforward: int
    dropout: float
    activation: str
    layer_norm_eps: float
    norm_first: bool
    bias: bool
    causal: bool
    d_model: int | None

    def children(self, x: Shape) -> dict[str, tuple[Layer, Shape]]:
        """The child layers by PyTorch attribute name, each with its input shape."""
        hidden = (*x[:-1], self.dim_feedforward)
        act = GELU() if self.activation == "gelu" else ReLU()
        return {
            "self_attn": (MultiheadAttention(num_heads=self.nhead, bias=self.bias, dropout=self.dropout,
                                             causal=self.causal), x),
            "linear1": (Linear(out_features=self.dim_feedforward, bias=self.bias), x),
            "linear2": (Linear(out_features=x[-1], bias=self.bias), hidden),
            "norm1": (LayerNorm(eps=self.layer_norm_eps, bias=self.bias), x),
            "norm2": (LayerNorm(eps=self.layer_norm_eps, bias=self.bias), x),
            "activation": (act, hidden),
        }

    def output_shape(self, x: Shape) -> Shape:
        _sequence(self, x)
        self.expect_size("d_model", self.d_model, x[2])
        for layer, shape in self.children(x).values():
            layer.output_shape(shape)  # the attention's head check
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {f"{name}.{p}": s for name, (layer, shape) in self.children(x).items()
                for p, s in layer.param_shapes(shape).items()}

    def work_elements(self, x: Shape) -> int:
        # each child's own work, and every child's output kept for the backward
        return sum(layer.work_elements(shape) + numel(layer.output_shape(shape)) for layer, shape in self.children(x).values())

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # the children's, with the attention's dropout, and the masks of the three dropouts on the
        # attention's output, the feed-forward's hidden activation and its output
        saved = [s for layer, shape in self.children(x).values()
                 for s in layer.saved_for_backward(shape, layer.output_shape(shape), flash)]
        if self.dropout > 0:
            hidden = (*x[:-1], self.dim_feedforward)
            saved += [Saved(numel(x), x[-1], mask=True), Saved(numel(hidden), hidden[-1], mask=True),
                      Saved(numel(x), x[-1], mask=True)]
        return saved

    def cache_shapes(self, x: Shape) -> dict[str, Shape]:
        layer, shape = self.children(x)["self_attn"]
        return {f"self_attn.{k}": s for k, s in layer.cache_shapes(shape).items()}  # type: ignore[attr-defined]

    def _each(self, x: Shape, what: str, *rest: Any) -> int:
        total = 0
        for layer, shape in self.children(x).values():
            total += getattr(layer, what)(shape, layer.output_shape(shape), *rest)
        return total

    def macs(self, x: Shape, y: Shape) -> int:
        return self._each(x, "macs")

    def fast_path(self) -> bool:
        """Whether PyTorch's eval, no-grad fast path (one fused op) runs the whole layer.

        It needs biases and an even head count; unlike nn.MultiheadAttention's, it takes the causal
        mask. Tools that hook modules (torchinfo, thop, ptflops) switch it off; fvcore's tracing
        switches off this layer's but not the attention's own fast path.
        """
        return self.bias and self.nhead % 2 == 0

    def fused_kernel(self) -> str | None:
        return ENCODER_FAST_PATH if self.fast_path() else None

    def peer_parts(self, x: Shape) -> list[tuple[CostModel, Shape]]:
        # F.relu / F.gelu are bound at construction, not modules: no tool sees the activation
        return [(layer, shape) for name, (layer, shape) in self.children(x).items() if name != "activation"]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        parts = []
        for name, (layer, shape) in self.children(x).items():
            # the attention reads x itself (post-norm) or norm1(x), which has parameters (pre-norm);
            # both linear layers read a tensor that depends on parameters
            needs = (input_grad or self.norm_first) if name == "self_attn" else True
            parts += layer.backward_parts(shape, layer.output_shape(shape), needs)
        return parts

    def init_params(self, x: Shape, rng: Any) -> dict[str, Any]:
        return {f"{name}.{p}": arr for name, (layer, shape) in self.children(x).items()
                for p, arr in layer.init_params(shape, rng).items()}

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        kids = self.children(tuple(x.shape))
        tape: list[Any] = []  # (child name, its cache): each child runs once

        def run(name: str, t: Any) -> Any:
            out, cache = kids[name][0].forward(t, _own(params, name))
            tape.append((name, cache))
            return out

        def mlp(t: Any) -> Any:
            return run("linear2", run("activation", run("linear1", t)))

        if self.norm_first:
            h = x + run("self_attn", run("norm1", x))
            y = h + mlp(run("norm2", h))
        else:
            h = run("norm1", x + run("self_attn", x))
            y = run("norm2", h + mlp(h))
        return y, (kids, tape)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        kids, tape = cache
        grads: dict[str, Any] = {}
        caches = dict(tape)

        def back(name: str, d: Any) -> Any:
            dx, own = kids[name][0].backward(d, _own(params, name), caches[name])
            grads.update({f"{name}.{p}": g for p, g in own.items()})
            return dx

        def mlp_back(d: Any) -> Any:
            return back("linear1", back("activation", back("linear2", d)))

        if self.norm_first:  # y = h + mlp(norm2(h)); h = x + attn(norm1(x))
            dh = dy + back("norm2", mlp_back(dy))
            dx = dh + back("norm1", back("self_attn", dh))
        else:  # y = norm2(h + mlp(h)); h = norm1(x + attn(x))
            dz = back("norm2", dy)
            dr = back("norm1", dz + mlp_back(dz))
            dx = dr + back("self_attn", dr)
        return dx, grads


def _own(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A child's parameters, without the child's name prefix."""
    prefix = name + "."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

