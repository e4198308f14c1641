"""Self-attention: multiheadattention (nn.MultiheadAttention), attention (Llama-style, grouped-query,
rotary) and transformerencoderlayer (nn.TransformerEncoderLayer, composed of the catalog's layers).

Sequences are batch first, (N, T, E). Scaled dot-product attention per head, q, k, v of (N, h, T, d):
    S = q kᵀ / √d,  A = softmax(S + M) over keys (M = -inf above the diagonal when causal),  o = A v.
MACs: the projections as linear layers, plus q kᵀ and A v, each N·h·T·T·d, counted in full even
when a causal mask discards half of the products (the kernels compute them).
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
import math
from typing import Any, NamedTuple

from ..errors import SchemaError, ShapeError
from ..lazy import np
from .activation import GELU, ReLU
from .base import Arg, Bool, Choice, Float, Int, Layer, Name, Opt, Saved, Shape, _bad, _show, fmt_shape, numel, register
from .numerics import stream_key
from .linear import Linear
from .norm import LayerNorm
from .cost import CostModel
from .counting import ENCODER_FAST_PATH, MHA_FAST_PATH, SDPA, Grad
from .peers import ATTN, BIAS, CONV, row, rules

# query rows per block of a causal or windowed attention (see _Attends.spans): smaller blocks skip
# more hidden keys, larger ones keep the products big enough to run near the BLAS's peak
BLOCK_ROWS = 64


def _sequence(layer: Layer, x: Shape) -> None:
    layer.expect_rank(x, 3, layout="(N, T, E)")


# -- the shared core: scaled dot-product attention and its backward -----------------------------


class _Attends(Layer):
    """Scaled dot-product attention over heads; a user's --impl may override attend / attend_backward."""

    causal: bool
    cross: str | None = None  # the stream keys and values come from (None: self-attention)
    memory: Shape | None = None  # that stream's shape, batch first, as the calculator handed it over

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

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.cross is not None:  # cross-attention looks at a whole other sequence: no future to mask
            if values.get("causal"):
                raise SchemaError(f"causal: true with cross: {self.cross!r}; cross-attention reads every position"
                                  " of the other stream and is never causal", value=True)
            self.causal = False

    def reads(self) -> tuple[str, ...]:
        return (self.cross,) if self.cross else ()

    def reading(self, streams: dict[str, Shape]) -> "_Attends":
        from copy import copy  # imported here: only a layer reading another stream or table needs it

        bound = copy(self)
        bound.memory = streams[self.cross]  # type: ignore[index]
        return bound

    def keys_of(self, x: Shape) -> Shape:
        """The shape keys and values are projected from: the other stream (N, S, E_mem), or x itself."""
        if self.cross is None:
            return x
        if self.memory is None:
            raise ShapeError(f"cross: {self.cross!r} is read before the calculator gave its shape", value=self.cross)
        if len(self.memory) != 3:
            raise ShapeError(f"cross: {self.cross!r} is {fmt_shape(self.memory)}; keys and values come from (N, S, E)",
                             value=self.memory)
        return (x[0], *self.memory[1:])  # the batch of the queries (verify's batch-2 copy draws both at 2)

    def spans(self, queries: int, keys: int) -> list[tuple[int, int, int, int]]:
        """(first query, end query, first key, end key) of each block of query rows and the keys
        any of its rows may see; keys outside a block's span get weight exactly 0 there."""
        w = self.window()
        if queries != keys or (not self.causal and w is None):
            return [(0, queries, 0, keys)]
        # causal (or windowed) rows in blocks: a block's products skip the keys none of its rows
        # sees, which halves the work of long causal sequences
        return [(r0, min(r0 + BLOCK_ROWS, queries), 0 if w is None else max(0, r0 - w + 1),
                 min(r0 + BLOCK_ROWS, queries) if self.causal else keys) for r0 in range(0, queries, BLOCK_ROWS)]

    def attend(self, q: Any, k: Any, v: Any, bias: Any = None) -> tuple[Any, Any]:
        """o = softmax(q kᵀ/√d + bias + mask) v for (N, h, T, d) queries and (N, h, S, d) keys and
        values, bias (h, T, S) or None; returns (o, cache). The cache's scores s (N, h, T, S) are
        unmasked, and 0 past each block's span (see spans), where the softmax a is 0 too."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        length = k.shape[-2]
        dtype = np.result_type(q, k) if bias is None else np.result_type(q, k, bias)
        s = np.zeros((*q.shape[:-1], length), dtype=dtype)  # (N, h, T, S): query rows, key columns
        a = np.zeros_like(s)
        o = np.empty((*q.shape[:-1], v.shape[-1]), dtype=np.result_type(dtype, v))
        hidden = self.hidden(length)
        for r0, r1, lo, hi in self.spans(q.shape[-2], length):
            sb = q[..., r0:r1, :] @ k[..., lo:hi, :].swapaxes(-1, -2)
            sb *= scale
            if bias is not None:
                sb = sb + bias[..., r0:r1, lo:hi]
            s[..., r0:r1, lo:hi] = sb
            if hidden is not None:  # a hidden key gets weight exactly 0
                sb = np.where(hidden[r0:r1, lo:hi], -np.inf, sb)
            sb -= sb.max(axis=-1, keepdims=True)
            np.exp(sb, out=sb)
            sb /= sb.sum(axis=-1, keepdims=True)
            a[..., r0:r1, lo:hi] = sb
            o[..., r0:r1, :] = sb @ v[..., lo:hi, :]
        return o, (q, k, v, s, a, scale)

    def attend_backward(self, do: Any, cache: Any) -> tuple[Any, Any, Any]:
        """(dq, dk, dv) from do = dL/do."""
        q, k, v, _, a, scale = cache
        dq = np.empty(np.broadcast_shapes(q.shape, do.shape), dtype=np.result_type(a, k))
        dk, dv = np.zeros(k.shape, dtype=np.result_type(a, q)), np.zeros(v.shape, dtype=np.result_type(a, do))
        for r0, r1, lo, hi in self.spans(q.shape[-2], k.shape[-2]):
            ab, dob = a[..., r0:r1, lo:hi], do[..., r0:r1, :]
            dv[..., lo:hi, :] += ab.swapaxes(-1, -2) @ dob
            ds = dob @ v[..., lo:hi, :].swapaxes(-1, -2)  # dL/da
            # softmax's Jacobian diag(a) - a aᵀ per row: ds = a ⊙ (da - Σ_j da·a); masked entries
            # have a = 0, so the mask's zeros carry through to ds
            ds -= (ds * ab).sum(axis=-1, keepdims=True)
            ds *= ab
            dq[..., r0:r1, :] = ds @ k[..., lo:hi, :]
            dk[..., lo:hi, :] += ds.swapaxes(-1, -2) @ q[..., r0:r1, :]
        dq *= scale
        dk *= scale
        return dq, dk, dv

    def cache_shapes(self, x: Shape) -> dict[str, Shape]:
        # a decoder generating token by token keeps every past key and value (a sliding window only
        # the last W); cross-attention keeps the other stream's S keys and values, projected once
        if not self.causal and self.cross is None:
            return {}
        kv, d = self.kv_layout(x)
        length = self.keys_of(x)[1]
        if self.window() is not None:
            length = min(length, self.window())
        return {"k": (x[0], kv, length, d), "v": (x[0], kv, length, d)}

    def kv_layout(self, x: Shape) -> tuple[int, int]:
        """(key/value heads, head_dim) for input x."""
        raise NotImplementedError

    def core_macs(self, x: Shape) -> int:
        """q kᵀ and A v over every query-key pair (as PyTorch computes them, causal or not): 2·N·h·T·S·d."""
        # grouped-query attention repeats each k, v head for its query heads: h heads of products
        return _core_macs(x[0], self.num_heads, x[1], self.kv_layout(x)[1], self.keys_of(x)[1])

    def causal_core(self, x: Shape) -> int:
        """q kᵀ and A v over the pairs the mask leaves (Megatron-LM's and FlashAttention's count):
        2·N·h·pairs·d."""
        # cross-attention masks nothing: every query meets all S keys
        pairs = visible_pairs(x[1], self.causal, self.window()) if self.cross is None else x[1] * self.keys_of(x)[1]
        return 2 * x[0] * self.num_heads * pairs * self.kv_layout(x)[1]  # type: ignore[attr-defined]

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # the projections' input; q, k, v; the softmax of the scores (and, with dropout on them, its
        # mask and its output); the heads' output, which is the output projection's input.
        # FlashAttention keeps no T×T matrix: its backward recomputes the scores block by block.
        n, length, keys = x[0], x[1], self.keys_of(x)[1]
        h, (kv, d) = self.num_heads, self.kv_layout(x)  # type: ignore[attr-defined]
        heads = [Saved(n * length * h * d, 0), Saved(n * keys * kv * d, 0), Saved(n * keys * kv * d, 0)]
        saved = [Saved(numel(x), x[-1], tensor="x"), *heads, Saved(n * length * h * d, 0)]
        if self.cross is not None:
            saved.append(Saved(numel(self.keys_of(x)), self.keys_of(x)[-1]))
        if not flash:
            scores = n * h * length * keys
            saved.append(Saved(scores, 0))
            if getattr(self, "dropout", 0.0) > 0:
                saved += [Saved(scores, 0, mask=True), Saved(scores, 0)]
        return saved

    def work_elements(self, x: Shape) -> int:
        # per head, the T×T scores and their softmax kept for backward and, at the backward's peak,
        # three more of that size (dA, dS and a product); about ten (N, T, h·d) projections
        # (q, k, v, the repeated keys and values, their gradients)
        n, length, keys = x[0], x[1], self.keys_of(x)[1]
        h = self.num_heads  # type: ignore[attr-defined]
        d = self.kv_layout(x)[1]
        return 5 * n * h * length * keys + 10 * n * max(length, keys) * h * d


def _heads(t: Any, h: int) -> Any:
    """(N, T, h·d) -> (N, h, T, d)."""
    n, length, width = t.shape
    return t.reshape(n, length, h, width // h).transpose(0, 2, 1, 3)


def _merge(t: Any) -> Any:
    """(N, h, T, d) -> (N, T, h·d)."""
    n, h, length, d = t.shape
    return t.transpose(0, 2, 1, 3).reshape(n, length, h * d)


def _core_macs(n: int, h: int, length: int, d: int, keys: int | None = None) -> int:
    """q kᵀ and A v: each N·h·T·S·d (S = T for self-attention)."""
    return 2 * n * h * length * (length if keys is None else keys) * d


def _memory(layer: _Attends, x: Any, params: dict[str, Any]) -> Any:
    """The array keys and values are projected from: the other stream's (verify hands it over
    among the parameters, under its stream key) or x itself."""
    return x if layer.cross is None else params[stream_key(layer.cross)]


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
        Arg("cross", Opt(Name()), None, "keys and values from this named input or earlier top-level entry (N, S, E_mem)"),
        Arg("kdim", Opt(Int()), None, "with cross: E_mem, inferred from the stream"),
        Arg("vdim", Opt(Int()), None, "with cross: E_mem, inferred from the stream"),
    )
    shape_rule = ("unchanged: (N, T, E); num_heads divides E; embed_dim must equal E; with cross, keys and values"
                  " from the stream (N, S, E_mem), kdim and vdim must equal E_mem")
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
    kdim: int | None
    vdim: int | None

    def output_shape(self, x: Shape) -> Shape:
        _sequence(self, x)
        self.expect_size("embed_dim", self.embed_dim, x[2])
        if x[2] % self.num_heads:
            raise ShapeError(f"num_heads {self.num_heads} does not divide the embedding width {x[2]} of "
                             f"{fmt_shape(x)}", value=self.num_heads)
        mem = self.keys_of(x)
        if self.cross is not None:
            _sequence(self, mem)
        for arg in ("kdim", "vdim"):
            if getattr(self, arg) is not None and getattr(self, arg) != mem[2]:
                where = f"cross: {self.cross!r} gives {fmt_shape(mem)}" if self.cross else f"the input is {fmt_shape(x)}"
                raise ShapeError(f"{arg} {getattr(self, arg)} does not match the keys' width {mem[2]} ({where})",
                                 value=getattr(self, arg))
        return x

    def kv_layout(self, x: Shape) -> tuple[int, int]:
        return self.num_heads, x[2] // self.num_heads

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        e, mem = x[2], self.keys_of(x)[2]
        if mem == e:  # nn.MultiheadAttention packs q, k, v whenever kdim = vdim = embed_dim
            shapes: dict[str, Shape] = {"in_proj_weight": (3 * e, e)}
        else:
            shapes = {"q_proj_weight": (e, e), "k_proj_weight": (e, mem), "v_proj_weight": (e, mem)}
        if self.bias:
            shapes["in_proj_bias"] = (3 * e,)
        shapes["out_proj.weight"] = (e, e)
        if self.bias:
            shapes["out_proj.bias"] = (e,)
        return shapes

    def projection_macs(self, x: Shape) -> int:
        """The q, k, v and output projections: 4·N·T·E² (with cross, k and v over S positions of E_mem)."""
        n, length, e = x
        _, keys, mem = self.keys_of(x)
        return 2 * n * length * e * e + 2 * n * keys * mem * e

    def macs(self, x: Shape, y: Shape) -> int:
        return self.projection_macs(x) + self.core_macs(x)

    def fast_path(self) -> bool:
        """Whether PyTorch's eval, no-grad fast path (one fused op, invisible to the counters) runs it.

        It needs an even head count and an in-projection bias, self-attention (query, key and value
        one tensor), and takes no float mask (causal).
        """
        return self.bias and self.num_heads % 2 == 0 and not self.causal and self.cross is None

    def fused_kernel(self) -> str | None:
        return MHA_FAST_PATH if self.fast_path() else None

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n, length, e = x
        h = self.num_heads
        proj, core = self.projection_macs(x), self.core_macs(x)
        # FlopCounterMode and fvcore see the projections' matmuls (unless the fast path runs);
        # neither sees scaled_dot_product_attention's CPU kernel
        # ptflops' own nn.MultiheadAttention hook, per sample: T·E for scaling q, the projections,
        # 3·T·E in-projection bias, per head T·T·d (q kᵀ) + T·T (softmax) + T·T·d (A v), and
        # T·E·(E + 1) for the output projection ("bias always enabled"); times N. With cross, keys
        # and values of S positions and width E_mem: it charges S·E_mem² for each of their
        # projections, (T + 2S)·E of bias, T·S·(d + 1 + E_mem/h) a head, and takes E_mem for E in
        # the output projection, T·E_mem·(E_mem + 1)
        _, keys, mem = self.keys_of(x)
        ptf_proj = n * (length * e * e + 2 * keys * mem * mem + length * mem * mem)
        ptf_bias = n * ((length + 2 * keys) * e * self.bias + length * mem)
        ptf_attn = n * (length * e + h * length * keys * (e // h + 1 + mem // h))
        # thop and torchinfo have no rule for it (and its out_proj runs as a function, not a module)
        return [
            row(CONV, layercalc=proj, torch=proj, fvcore=proj, ptflops=(ptf_proj, 0)),
            row(ATTN, layercalc=core, ptflops=(ptf_attn, 0), causal=self.causal_core(x)),
            row(BIAS, ptflops=(ptf_bias, 0)),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        n, length, e = x
        # in_proj: ∇W always, ∇x when needed; out_proj: ∇W and ∇(its input) always; the attention
        # products: dq = ds k, dk = dsᵀ q, dA = do vᵀ, dv = Aᵀ do, twice the forward's two products
        out_proj = n * length * e * e
        in_proj = self.projection_macs(x) - out_proj
        core = 2 * self.core_macs(x)
        return _projection_grads(in_proj, out_proj, input_grad) + [
            Grad(core, weight=False, kernel=SDPA, masked=2 * self.causal_core(x))]

    def _weights(self, params: dict[str, Any]) -> list[Any]:
        """The q, k and v projection weights: rows of the packed in_proj_weight, or their own."""
        if "in_proj_weight" in params:
            return np.split(params["in_proj_weight"], 3, axis=0)
        return [params["q_proj_weight"], params["k_proj_weight"], params["v_proj_weight"]]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        h = self.num_heads
        mem = _memory(self, x, params)
        wq, wk, wv = self._weights(params)
        q, k, v = x @ wq.T, mem @ wk.T, mem @ wv.T
        if self.bias:
            bq, bk, bv = np.split(params["in_proj_bias"], 3)
            q, k, v = q + bq, k + bk, v + bv
        o, core = self.attend(_heads(q, h), _heads(k, h), _heads(v, h))
        merged = _merge(o)
        y = merged @ params["out_proj.weight"].T
        if self.bias:
            y = y + params["out_proj.bias"]
        return y, (x, mem, merged, core)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        x, mem, merged, core = cache
        h = self.num_heads
        grads: dict[str, Any] = {"out_proj.weight": _flat(dy).T @ _flat(merged)}
        dq, dk, dv = (_merge(g) for g in self.attend_backward(_heads(dy @ params["out_proj.weight"], h), core))
        wq, wk, wv = self._weights(params)
        dw = [_flat(dq).T @ _flat(x), _flat(dk).T @ _flat(mem), _flat(dv).T @ _flat(mem)]
        if "in_proj_weight" in params:
            grads["in_proj_weight"] = np.concatenate(dw, axis=0)
        else:
            grads.update(zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), dw))
        if self.bias:
            grads["in_proj_bias"] = np.concatenate([_flat(dq).sum(axis=0), _flat(dk).sum(axis=0), _flat(dv).sum(axis=0)])
            grads["out_proj.bias"] = _flat(dy).sum(axis=0)
        dx, dmem = dq @ wq, dk @ wk + dv @ wv
        if self.cross is None:
            return dx + dmem, grads
        grads[stream_key(self.cross)] = dmem
        return dx, grads


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


class RelativeBias(NamedTuple):
    """T5's relative position bias: a learned num_buckets × heads table added to the logits."""

    num_buckets: int
    max_distance: int
    bidirectional: bool

    def __str__(self) -> str:
        return f"{self.num_buckets}b/{self.max_distance}{'' if self.bidirectional else '/causal'}"


class RelativeBiasArg:
    """{num_buckets: 32, max_distance: 128, bidirectional: true} (each optional, T5's defaults) -> RelativeBias."""

    defaults = {"num_buckets": 32, "max_distance": 128, "bidirectional": True}

    def __call__(self, v: Any) -> RelativeBias | None:
        if v is None or v is False:
            return None
        if v is True:
            v = {}
        if not isinstance(v, dict):
            raise SchemaError(f"expected a mapping like {{num_buckets: 32, max_distance: 128, bidirectional: true}},"
                              f" got {_show(v)}", value=v)
        for key in v:
            if key not in self.defaults:
                raise SchemaError(f"unknown key {key!r} (num_buckets, max_distance, bidirectional)", value=key)
        values = {**self.defaults, **dict(v)}
        bias = RelativeBias(Int(2)(values["num_buckets"]), Int(1)(values["max_distance"]), Bool()(values["bidirectional"]))
        if bias.bidirectional and bias.num_buckets % 2:
            raise SchemaError(f"num_buckets {bias.num_buckets} is odd: bidirectional halves it", value=bias.num_buckets)
        return bias


def relative_buckets(queries: int, keys: int, bias: RelativeBias) -> Any:
    """(T, S) bucket of each query i and key j, as T5's _relative_position_bucket of j - i: exact
    below half the buckets, then logarithmic up to max_distance (float32 arithmetic, as PyTorch's)."""
    rel = np.arange(keys)[None, :] - np.arange(queries)[:, None]
    buckets, n = np.zeros(rel.shape, dtype=np.int64), bias.num_buckets
    if bias.bidirectional:
        n //= 2
        buckets += (rel > 0) * n
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    exact = n // 2
    ratio = np.maximum(rel, 1).astype(np.float32) / np.float32(exact)
    large = exact + (np.log(ratio) / np.float32(math.log(bias.max_distance / exact)) * np.float32(n - exact)).astype(np.int64)
    return buckets + np.where(rel < exact, rel, np.minimum(large, n - 1))


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
        Arg("cross", Opt(Name()), None, "keys and values from this named input or earlier top-level entry (N, S, E_mem);"
            " causal then defaults to false"),
        Arg("relative_bias", RelativeBiasArg(), None, "T5's {num_buckets: 32, max_distance: 128, bidirectional: true};"
            " later self-attention of the same top-level entry reuses it"),
    )
    shape_rule = ("unchanged: (N, T, E); d = head_dim, or E / num_heads (num_heads divides E); kv = num_kv_heads"
                  " (null = num_heads) divides num_heads; rope rotates int(d·partial_rotary_factor) dims, an even"
                  " number; sliding_window only with causal; with cross, k and v from the stream (N, S, E_mem)")
    params_rule = ("q_proj.weight E·h·d, k_proj.weight and v_proj.weight E·kv·d each (E_mem·kv·d with cross),"
                   " o_proj.weight h·d·E, + biases h·d, kv·d, kv·d and E if bias (those listed, if a list);"
                   " h = num_heads; relative_attention_bias.weight num_buckets·h where relative_bias is declared")
    buffers_rule = ("none (rope's inverse frequencies are not state here); with causal, a KV cache 2·N·kv·T·d is"
                    " reported apart, T capped at sliding_window (S positions with cross)")
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

    relative_bias: RelativeBias | None
    bias_owner: str | None = None  # the earlier layer whose relative bias table this one reads

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.cross is not None and self.relative_bias is not None:
            raise SchemaError("relative_bias with cross: T5's cross-attention has no position bias", value=self.cross)
        if self.cross is not None and self.rope:
            raise SchemaError("rope with cross: positions of two streams do not rotate against each other",
                              value=self.cross)

    def offers(self) -> dict[str, Any]:
        # T5: the first self-attention's table serves every later one of the same stack
        return {"relative_bias": self.relative_bias} if self.relative_bias is not None and not self.bias_owner else {}

    def sharing(self, offered: dict[str, tuple[str, Any]]) -> "Attention":
        if self.cross is not None or self.relative_bias is not None or "relative_bias" not in offered:
            return self
        owner, table = offered["relative_bias"]
        from copy import copy  # imported here: only a layer reading another stream or table needs it

        bound = copy(self)
        bound.bias_owner, bound.relative_bias = owner, table
        return bound

    def shared_params(self) -> dict[str, str]:
        return {"relative_attention_bias.weight": self.bias_owner} if self.bias_owner else {}

    def biased(self, name: str) -> bool:
        """Whether projection `name` (q_proj, k_proj, v_proj, o_proj) has a bias."""
        return self.bias is True or (isinstance(self.bias, tuple) and name[0] in self.bias)

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
        """(in, out) features of q_proj, k_proj, v_proj, o_proj (k and v read the keys' width)."""
        e, hd, kvd = x[2], self.num_heads * self.dim(x), self.kv_heads * self.dim(x)
        mem = self.keys_of(x)[2]
        return {"q_proj": (e, hd), "k_proj": (mem, kvd), "v_proj": (mem, kvd), "o_proj": (hd, e)}

    def _positions(self, x: Shape) -> dict[str, int]:
        """Positions each projection runs over: T for q and o, S for k and v."""
        keys = self.keys_of(x)[1]
        return {"q_proj": x[1], "k_proj": keys, "v_proj": keys, "o_proj": x[1]}

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {}
        for name, (fan_in, out) in self._projections(x).items():
            shapes[f"{name}.weight"] = (out, fan_in)
            if self.biased(name):
                shapes[f"{name}.bias"] = (out,)
        if self.relative_bias is not None:
            shapes["relative_attention_bias.weight"] = (self.relative_bias.num_buckets, self.num_heads)
        return shapes

    def projection_macs(self, x: Shape) -> int:
        """N·T·(E·h·d + h·d·E) + N·S·2·E_mem·kv·d: the four projections as linear layers (S = T, E_mem = E
        for self-attention)."""
        positions = self._positions(x)
        return x[0] * sum(positions[name] * i * o for name, (i, o) in self._projections(x).items())

    def macs(self, x: Shape, y: Shape) -> int:
        return self.projection_macs(x) + self.core_macs(x)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        n = x[0]
        proj = self.projection_macs(x)
        positions = self._positions(x)
        weights = sum(i * o for i, o in self._projections(x).values())
        # four nn.Linear modules, each counted as the tools count linear layers; torchinfo charges
        # params × batch (the sequence length is lost); nobody sees scaled_dot_product_attention's
        # CPU kernel, rope's elementwise products or repeat_kv's copies
        bias = n * sum(positions[name] * o for name, (_, o) in self._projections(x).items() if self.biased(name))
        widths = sum(o for name, (_, o) in self._projections(x).items() if self.biased(name))
        return [
            row(CONV, layercalc=proj, torch=proj, fvcore=proj, thop=proj, ptflops=(proj, 0), torchinfo=n * weights),
            row(ATTN, layercalc=self.core_macs(x),
                causal=self.causal_core(x)),
            row(BIAS, ptflops=(bias, 0), torchinfo=n * widths),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        n = x[0]
        p, positions = self._projections(x), self._positions(x)
        qkv = n * sum(positions[name] * i * o for name, (i, o) in p.items() if name != "o_proj")
        o_proj = n * x[1] * p["o_proj"][0] * p["o_proj"][1]
        core = 2 * self.core_macs(x)
        return _projection_grads(qkv, o_proj, input_grad) + [
            Grad(core, weight=False, kernel=SDPA, masked=2 * self.causal_core(x))]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        h, kv = self.num_heads, self.kv_heads
        mem = _memory(self, x, params)
        proj = {}
        for name in ("q_proj", "k_proj", "v_proj"):
            proj[name] = (x if name == "q_proj" else mem) @ params[f"{name}.weight"].T
            if self.biased(name):
                proj[name] = proj[name] + params[f"{name}.bias"]
        q, k, v = _heads(proj["q_proj"], h), _heads(proj["k_proj"], kv), _heads(proj["v_proj"], kv)
        tables = None
        if self.rope:  # the first r dims: q·cos + rotate_half(q)·sin, position by position; the rest pass
            r = self.rotary_dims(x.shape)
            cos, sin = tables = rope_tables(x.shape[1], r, self.rope_theta, x.dtype)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        buckets = bias = None
        if self.relative_bias is not None:  # table[bucket(j - i), head] added to logit (i, j) of every sample
            buckets = relative_buckets(x.shape[1], mem.shape[1], self.relative_bias)
            bias = params["relative_attention_bias.weight"][buckets].transpose(2, 0, 1)  # (h, T, S)
        # repeat_kv: query head i reads key/value head i // (h / kv)
        group = h // kv
        o, core = self.attend(q, np.repeat(k, group, axis=1), np.repeat(v, group, axis=1), bias)
        merged = _merge(o)
        y = merged @ params["o_proj.weight"].T
        if self.biased("o_proj"):
            y = y + params["o_proj.bias"]
        return y, (x, mem, merged, core, tables, buckets)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        x, mem, merged, core, tables, buckets = cache
        h, kv = self.num_heads, self.kv_heads
        group = h // kv
        grads: dict[str, Any] = {"o_proj.weight": _flat(dy).T @ _flat(merged)}
        if self.biased("o_proj"):
            grads["o_proj.bias"] = _flat(dy).sum(axis=0)
        do = _heads(dy @ params["o_proj.weight"], h)
        dq, dk, dv = self.attend_backward(do, core)
        if buckets is not None:  # the bias is added to the logits: its gradient is dL/dlogits, summed
            table = params["relative_attention_bias.weight"]  # over the batch, then per bucket and head
            ds = _logits_grad(do, core).sum(axis=0)  # (h, T, S)
            dtable = np.zeros_like(table)
            np.add.at(dtable, buckets.reshape(-1), ds.transpose(1, 2, 0).reshape(-1, h))
            grads["relative_attention_bias.weight"] = dtable
        # repeat_kv's backward: each k, v head collects the gradients of the query heads that read it
        n, _, length, d = dk.shape
        dk = dk.reshape(n, kv, group, length, d).sum(axis=2)
        dv = dv.reshape(n, kv, group, length, d).sum(axis=2)
        if tables is not None:
            dq, dk = _rotate_backward(dq, *tables), _rotate_backward(dk, *tables)
        dx, dmem = np.zeros_like(x), np.zeros_like(mem)
        for name, g in (("q_proj", dq), ("k_proj", dk), ("v_proj", dv)):
            flat, source = _merge(g), x if name == "q_proj" else mem
            grads[f"{name}.weight"] = _flat(flat).T @ _flat(source)
            if self.biased(name):
                grads[f"{name}.bias"] = _flat(flat).sum(axis=0)
            if name == "q_proj":
                dx += flat @ params[f"{name}.weight"]
            else:
                dmem += flat @ params[f"{name}.weight"]
        if self.cross is None:
            return dx + dmem, grads
        grads[stream_key(self.cross)] = dmem
        return dx, grads


def _logits_grad(do: Any, core: Any) -> Any:
    """dL/d(logits) (N, h, T, S) of attend from do = dL/do: softmax's Jacobian applied to dL/dA."""
    _, _, v, _, a, _ = core
    da = do @ v.swapaxes(-1, -2)
    return a * (da - (da * a).sum(axis=-1, keepdims=True))


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
        # (tensors of this layer's own, whichever child keeps them)
        saved = [s._replace(tensor="") for layer, shape in self.children(x).values()
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

