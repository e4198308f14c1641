"""The PyTorch oracle (tests only): a config dict -> the equivalent torch.nn model, and what
PyTorch itself says about it: parameters, buffers, FlopCounterMode / 2, every leaf's output shape.

It re-implements the config semantics with torch.nn independently of layercalc: input sizes
come from running a real tensor through each module as it is built, never from shape formulas.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ENTRY_KEYS = ("name", "repeat", "trainable")  # an entry's keys besides its one type key
INFERRED = {"in_channels", "in_features", "num_features", "normalized_shape", "num_channels", "input_size"}


class Residual(nn.Module):
    """out = body(x) + shortcut(x)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    """Branch outputs joined on dim 1."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class Recurrent(nn.Module):
    """nn.LSTM / nn.GRU / nn.RNN (batch first) giving only its output sequence, not its final states."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn  # held, not subclassed: thop and ptflops match modules by exact class

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


# -- attention: the torch modules a config's attention types stand for -----------------------------


def causal_mask(length: int) -> torch.Tensor:
    """PyTorch's documented causal mask: -inf above the diagonal (float, as the docs generate it)."""
    return nn.Transformer.generate_square_subsequent_mask(length)


class MultiheadSelfAttention(nn.Module):
    """nn.MultiheadAttention(E, num_heads, bias, batch_first=True) called as self-attention, the way
    transformer blocks call it (torchvision's ViT): need_weights=False; causal = mask + is_causal."""

    def __init__(self, e: int, num_heads: int, bias: bool = True, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(e, num_heads, dropout=dropout, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = causal_mask(x.shape[1]) if self.causal else None
        return self.mha(x, x, x, attn_mask=mask, is_causal=self.causal, need_weights=False)[0]


def rotary(t: torch.Tensor, theta: float, factor: float = 1.0) -> torch.Tensor:
    """Hugging Face's rotary embedding of (N, h, T, d) on its first int(d·factor) dims (GPT-NeoX's
    apply_rotary_pos_emb with rotary_ndims): t·cos + rotate_half(t)·sin there, the rest passed on."""
    length, d = t.shape[-2], int(t.shape[-1] * factor)
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).to(t.dtype) / d))
    freqs = torch.outer(torch.arange(length, dtype=t.dtype), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    half, rot = d // 2, t[..., :d]
    rotated = rot * emb.cos() + torch.cat([-rot[..., half:], rot[..., :half]], dim=-1) * emb.sin()
    return torch.cat([rotated, t[..., d:]], dim=-1)


def window_mask(length: int, window: int) -> torch.Tensor:
    """Mistral's sliding-window causal mask as transformers' masking_utils writes it: query i sees key
    j when j <= i and j > i - window (True = attend)."""
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    return (j <= i) & (j > i - window)


class LlamaStyleAttention(nn.Module):
    """Decoder self-attention with separate q, k, v, o projections, repeat_kv for grouped-query
    attention, rotary embeddings and F.scaled_dot_product_attention."""

    def __init__(self, e: int, num_heads: int, num_kv_heads: int | None = None, head_dim: int | None = None,
                 bias: bool | list[str] = False, causal: bool = True, rope: bool = False,
                 rope_theta: float = 10000.0, partial_rotary_factor: float = 1.0,
                 sliding_window: int | None = None) -> None:
        super().__init__()
        self.h, self.kv = num_heads, num_kv_heads or num_heads
        self.d = head_dim or e // num_heads
        self.causal, self.rope, self.theta = causal, rope, rope_theta
        self.factor, self.window = partial_rotary_factor, sliding_window
        has = (lambda p: bias) if isinstance(bias, bool) else (lambda p: p in bias)  # noqa: E731
        self.q_proj = nn.Linear(e, self.h * self.d, bias=has("q"))
        self.k_proj = nn.Linear(e, self.kv * self.d, bias=has("k"))
        self.v_proj = nn.Linear(e, self.kv * self.d, bias=has("v"))
        self.o_proj = nn.Linear(self.h * self.d, e, bias=has("o"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        q = self.q_proj(x).view(n, length, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(n, length, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(n, length, self.kv, self.d).transpose(1, 2)
        if self.rope:
            q, k = rotary(q, self.theta, self.factor), rotary(k, self.theta, self.factor)
        k = k.repeat_interleave(self.h // self.kv, dim=1)  # repeat_kv
        v = v.repeat_interleave(self.h // self.kv, dim=1)
        if self.window is not None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(length, self.window))
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.o_proj(o.transpose(1, 2).reshape(n, length, self.h * self.d))


class EncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer(batch_first=True); causal = src_mask + is_causal."""

    def __init__(self, e: int, nhead: int, causal: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(e, nhead, batch_first=True, **kwargs)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = causal_mask(x.shape[1]) if self.causal else None
        return self.layer(x, src_mask=mask, is_causal=self.causal)


ATTENTION = {"multiheadattention": MultiheadSelfAttention, "attention": LlamaStyleAttention,
             "transformerencoderlayer": EncoderLayer}


# -- window attention (Swin): torchvision's ShiftedWindowAttention and PatchMerging, in plain torch ------
# torchvision cannot be installed beside this torch build; these follow its modules' parameter names
# and order, buffers and operations (F.linear on the weights, Tensor.matmul, F.softmax), so every
# counter sees what it sees in torchvision. tests/test_window.py checks them against torchvision
# itself wherever it imports.


class WindowAttention(nn.Module):
    """Self-attention inside (shifted) windows of an (N, H, W, C) map, with a relative position bias."""

    def __init__(self, c: int, num_heads: int, window_size: Any, shift_size: Any = 0, attention_dropout: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.window = list(window_size) if isinstance(window_size, tuple) else [window_size] * 2
        self.shift = list(shift_size) if isinstance(shift_size, tuple) else [shift_size] * 2
        self.heads, self.attention_dropout, self.dropout = num_heads, attention_dropout, dropout
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        wh, ww = self.window
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * wh - 1) * (2 * ww - 1), num_heads) * 0.02)
        pos = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, L)
        offset = pos[:, :, None] - pos[:, None, :]  # (2, L, L): query minus key
        index = (offset[0] + wh - 1) * (2 * ww - 1) + offset[1] + ww - 1
        self.register_buffer("relative_position_index", index.flatten())

    def _mask(self, hp: int, wp: int, shift: list[int], like: torch.Tensor) -> torch.Tensor:
        """(windows, L, L): -100 between tokens of different regions of the rolled map, else 0."""
        wh, ww = self.window
        label = torch.zeros(hp, wp, dtype=like.dtype)
        for size, w, s, dim in ((hp, wh, shift[0], 0), (wp, ww, shift[1], 1)):
            where = torch.arange(size)
            region = (where >= size - w).to(like.dtype) + ((where >= size - s).to(like.dtype) if s else 0)
            label = label + (region * (3 if dim == 0 else 1)).reshape((-1, 1) if dim == 0 else (1, -1))
        wins = label.reshape(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
        diff = wins[:, None, :] - wins[:, :, None]
        return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        wh, ww = self.window
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        hp, wp = x.shape[1], x.shape[2]
        shift = [0 if wh >= hp else self.shift[0], 0 if ww >= wp else self.shift[1]]
        if sum(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        nw, length = (hp // wh) * (wp // ww), wh * ww
        x = x.view(n, hp // wh, wh, wp // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(n * nw, length, c)
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias).reshape(n * nw, length, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        q = q * (c // self.heads) ** -0.5
        bias = self.relative_position_bias_table[self.relative_position_index].view(length, length, -1)
        attn = q.matmul(k.transpose(-2, -1)) + bias.permute(2, 0, 1).unsqueeze(0)
        if sum(shift):
            attn = attn.view(n, nw, self.heads, length, length) + self._mask(hp, wp, shift, x)[None, :, None]
            attn = attn.view(n * nw, self.heads, length, length)
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(n * nw, length, c)
        x = F.dropout(F.linear(x, self.proj.weight, self.proj.bias), p=self.dropout, training=self.training)
        x = x.view(n, hp // wh, wp // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(n, hp, wp, c)
        if sum(shift):
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class PatchMerging(nn.Module):
    """(N, H, W, C) -> (N, ⌈H/2⌉, ⌈W/2⌉, 2C): each 2x2 patch's vectors joined, layernorm, linear without bias."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * c, 2 * c, bias=False)
        self.norm = nn.LayerNorm(4 * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-3], x.shape[-2]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


WINDOW = {"windowattention": WindowAttention, "patchmerging": PatchMerging}
# modules a config names as one layer, whatever runs inside them (one row, one output)
WHOLE = (*ATTENTION.values(), *WINDOW.values())


def _explicit_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Any = None, dropout_p: float = 0.0,
                   is_causal: bool = False, scale: Any = None, enable_gqa: bool = False) -> torch.Tensor:
    """scaled_dot_product_attention as two explicit matmuls and a softmax (visible to every counter)."""
    s = (q @ k.transpose(-2, -1)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if attn_mask is not None:
        s = s + attn_mask if attn_mask.dtype != torch.bool else s.masked_fill(~attn_mask, float("-inf"))
    elif is_causal:
        s = s + causal_mask(q.shape[-2]).to(s.dtype)
    return torch.softmax(s, dim=-1) @ v


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """Run attention the slow, transparent way: no fused fast path, SDPA as explicit matmuls."""
    saved, enabled = F.scaled_dot_product_attention, torch.backends.mha.get_fastpath_enabled()
    F.scaled_dot_product_attention = _explicit_sdpa
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        F.scaled_dot_product_attention = saved
        torch.backends.mha.set_fastpath_enabled(enabled)


class Multiply(nn.Module):
    """Elementwise product of the branch outputs, written `a * b` as gated MLPs do."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out * branch(x)
        return out


class PosEmbedding(nn.Module):
    """A learned (num_positions, E) table whose first T rows are added (torchvision ViT's name)."""

    def __init__(self, positions: int, width: int, offset: int = 0) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.randn(positions, width))
        self.offset = offset  # the first row read (OPT's learned positions start at row 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] + self.offset > self.pos_embedding.shape[0]:  # a slice would silently broadcast one row
            raise ValueError(f"sequence length {x.shape[1]} + {self.offset} > {self.pos_embedding.shape[0]} positions")
        return x + self.pos_embedding[self.offset : self.offset + x.shape[1]]


class ClsToken(nn.Module):
    """A learned token prepended to the sequence (torchvision ViT's class_token)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.class_token = nn.Parameter(torch.randn(1, 1, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)


class TensorOp(nn.Module):
    """One tensor method call with fixed arguments: x.transpose(1, 2), x.mean(1), ..."""

    def __init__(self, method: str, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.method, self.args, self.kwargs = method, args, kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "reshape":  # one sample's shape: the batch stays
            return x.reshape(x.shape[0], *self.args)
        return getattr(x, self.method)(*self.args, **self.kwargs)


class Scale(nn.Module):
    """x times a learned vector over one dim, shaped (size, 1, ..., 1) as ConvNeXt's layer_scale."""

    def __init__(self, x: torch.Tensor, dim: int = -1) -> None:
        super().__init__()
        d = dim % x.dim()
        self.weight = nn.Parameter(torch.randn(x.shape[d], *[1] * (x.dim() - 1 - d)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class Shift(nn.Module):
    """x plus a learned vector over one dim (RoBERTa's token-type row); with rows > 1 a table of
    which the first row is added (BERT's token types when every token is of type 0)."""

    def __init__(self, x: torch.Tensor, dim: int = -1, rows: int = 1) -> None:
        super().__init__()
        d = dim % x.dim()
        shape = (x.shape[d], *[1] * (x.dim() - 1 - d))
        self.bias = nn.Parameter(torch.randn(shape if rows == 1 else (rows, *shape)))
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.bias if self.rows == 1 else self.bias[0])


class LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d (ConvNeXt): nn.LayerNorm over the channels of (N, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _vector_leaf(kind: str, a: dict[str, Any], x: torch.Tensor) -> nn.Module | None:
    """scale, shift, layernorm2d, narrow and softplus (None for any other kind)."""
    if kind == "scale":
        return Scale(x, **a)
    if kind == "shift":
        return Shift(x, **a)
    if kind == "layernorm2d":
        return LayerNorm2d(x.shape[1], eps=a.get("eps", 1e-6))
    if kind == "narrow":
        return TensorOp("narrow", a["dim"], a["start"], a["length"])
    if kind == "softplus":
        return nn.Softplus(**a)
    return None


class Mamba(nn.Module):
    """transformers' MambaMixer built from a MambaConfig (random weights) on its slow path: the
    sequential scan that runs without CUDA kernels (use_mambapy off)."""

    def __init__(self, e: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 conv_bias: bool = True, bias: bool = False) -> None:
        super().__init__()
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer

        config = MambaConfig(hidden_size=e, state_size=d_state, conv_kernel=d_conv, expand=expand,
                             time_step_rank=dt_rank or "auto", use_conv_bias=conv_bias, use_bias=bias,
                             use_mambapy=False, num_hidden_layers=1)
        self.mixer = MambaMixer(config, layer_idx=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float64:
            return self.mixer(x)
        with float64_kept():
            return self.mixer(x)


@contextlib.contextmanager
def float64_kept() -> Iterator[None]:
    """Tensor.float() leaves a float64 tensor as it is. MambaMixer calls .float() on A_log, D and
    dt_proj's bias to run a half-precision model's scan in float32; in a float64 run that rounds
    those three to float32, and the oracle would no longer be float64 arithmetic."""
    original = torch.Tensor.float

    def keep(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self if self.dtype == torch.float64 else original(self, *args, **kwargs)

    torch.Tensor.float = keep  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.float = original  # type: ignore[method-assign]
class SparseMoe(nn.Module):
    """Mixtral's sparse mixture of experts as transformers wrote MixtralSparseMoeBlock with one module
    per expert (before its experts became 3-D tensors): a router `gate`, softmax, the top_k
    probabilities renormalised to sum 1, each expert run on the tokens routed to it, weighted and
    added back (index_add_), plus an optional shared expert on every token. The softmax keeps the
    input's dtype (Mixtral computes it in float32), so a float64 reference stays float64."""

    def __init__(self, gate: nn.Module, experts: list[nn.Module], shared: nn.Module | None, top_k: int) -> None:
        super().__init__()
        self.gate, self.experts, self.top_k = gate, nn.ModuleList(experts), top_k
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.shape[-1])
        probs = nn.functional.softmax(self.gate(h), dim=1)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            # transformers skips an expert no token chose; here it runs on no tokens, which computes
            # nothing and gives its weights a zero gradient (not None), as the NumPy reference does
            token, slot = torch.where(chosen == e)
            out.index_add_(0, token, expert(h[token]) * weights[token, slot, None])
        if self.shared is not None:
            out = out + self.shared(h)
        return out.reshape(x.shape)


NAMED: dict[str, nn.Module] = {}  # modules by config name while building (for tied weights)


def _sequence_leaf(kind: str, a: dict[str, Any], x: torch.Tensor) -> nn.Module | None:
    """The sequence-model types (None for any other kind)."""
    if kind == "embedding":
        return nn.Embedding(**a)
    if kind == "posembedding":
        offset = a.get("offset", 0)
        return PosEmbedding(a.get("num_positions") or x.shape[1] + offset, x.shape[-1], offset)
    if kind == "clstoken":
        return ClsToken(x.shape[-1])
    if kind == "rmsnorm":
        return nn.RMSNorm(x.shape[-1], **a)
    if kind == "mamba":
        return Mamba(x.shape[-1], **a)
    if kind == "linear" and a.get("tied_to"):
        owner = NAMED[a.pop("tied_to")]
        module = nn.Linear(x.shape[-1], **a)
        module.weight = owner.weight  # one tensor: parameters() counts it once
        return module
    calls = {"transpose": ("dim0", "dim1"), "permute": ("dims",), "select": ("dim", "index"), "reshape": ("shape",)}
    if kind in calls:
        args = [a[k] for k in calls[kind]]
        return TensorOp(kind, *(args[0] if kind in ("permute", "reshape") else args))
    if kind == "mean":
        return TensorOp("mean", a["dim"], keepdim=a.get("keepdim", False))
    return None


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _leaf(kind: str, args: dict[str, Any], x: torch.Tensor) -> nn.Module:
    a = {k: _tuple(v) for k, v in args.items() if k not in INFERRED}
    if kind in ATTENTION:
        return ATTENTION[kind](x.shape[-1], **a)
    if kind in WINDOW:
        return WINDOW[kind](x.shape[-1], **a)
    c = x.shape[1] if x.dim() > 1 else None
    sequence = _sequence_leaf(kind, a, x)
    if sequence is not None:
        return sequence
    vector = _vector_leaf(kind, a, x)
    if vector is not None:
        return vector
    if kind == "linear":
        return nn.Linear(x.shape[-1], **a)
    if kind in ("conv1d", "conv2d", "conv3d"):
        return getattr(nn, "Conv" + kind[-2:])(c, **a)
    if kind in ("convtranspose1d", "convtranspose2d"):
        return getattr(nn, "ConvTranspose" + kind[-2:])(c, **a)
    if kind in ("batchnorm1d", "batchnorm2d", "batchnorm3d"):
        return getattr(nn, "BatchNorm" + kind[-2:])(c, **a)
    if kind == "upsample":
        return nn.Upsample(**a)
    if kind == "pixelshuffle":
        return nn.PixelShuffle(**a)
    if kind == "layernorm":
        return nn.LayerNorm(x.shape[-1], **a)
    if kind in ("lstm", "gru", "rnn"):
        a["batch_first"] = True
        return Recurrent(getattr(nn, kind.upper())(x.shape[-1], **a))
    if kind == "groupnorm":
        return nn.GroupNorm(num_channels=c, **a)
    names = {
        "maxpool1d": "MaxPool1d", "maxpool2d": "MaxPool2d", "avgpool1d": "AvgPool1d", "avgpool2d": "AvgPool2d",
        "adaptiveavgpool1d": "AdaptiveAvgPool1d", "adaptiveavgpool2d": "AdaptiveAvgPool2d",
        "adaptivemaxpool1d": "AdaptiveMaxPool1d", "adaptivemaxpool2d": "AdaptiveMaxPool2d",
        "maxpool3d": "MaxPool3d", "avgpool3d": "AvgPool3d", "adaptiveavgpool3d": "AdaptiveAvgPool3d",
        "relu": "ReLU", "relu6": "ReLU6", "leakyrelu": "LeakyReLU", "elu": "ELU", "gelu": "GELU", "silu": "SiLU",
        "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "Hardswish", "hardsigmoid": "Hardsigmoid",
        "softmax": "Softmax", "identity": "Identity", "dropout": "Dropout", "dropout2d": "Dropout2d", "flatten": "Flatten",
    }
    if kind == "softmax":
        a.setdefault("dim", -1)
    return getattr(nn, names[kind])(**a)


def _entry(entry: Any, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    if isinstance(entry, str):
        kind, args, repeat = entry, {}, 1
    else:
        (kind,) = [k for k in entry if k not in ENTRY_KEYS]
        args, repeat = entry[kind] or {}, entry.get("repeat", 1)
    kind = kind.lower()
    copies = []
    for _ in range(repeat):
        if kind == "residual":
            body, _ = _sequence(args["body"], x)
            shortcut, _ = _sequence(args.get("shortcut") or [], x)
            module: nn.Module = Residual(body, shortcut)
        elif kind == "concat":
            module = Concat([_sequence(b, x)[0] for b in args["branches"]])
        elif kind == "sequential":
            module = _sequence(args["layers"], x)[0]
        elif kind == "multiply":
            module = Multiply([_sequence(b, x)[0] for b in args["branches"]])
        elif kind in TEMPLATES:
            module = _instance(kind, args, x)
        elif kind == "moe":
            tokens = x.reshape(-1, x.shape[-1])
            gate = nn.Linear(x.shape[-1], args["num_experts"], bias=args.get("router_bias", False))
            experts = [_sequence(args["expert"], tokens)[0] for _ in range(args["num_experts"])]
            shared = _sequence(args["shared"], tokens)[0] if args.get("shared") else None
            module = SparseMoe(gate, experts, shared, args["top_k"])
        else:
            module = _leaf(kind, args, x)
        if isinstance(entry, dict) and "name" in entry:
            NAMED[entry["name"]] = module
        if isinstance(entry, dict) and entry.get("trainable") is False:
            module.requires_grad_(False)  # a frozen entry: none of its parameters gets a gradient
        module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nn.LSTM with proj_size: "not supported with oneDNN"
            x = module(x)
        copies.append(module)
    return (copies[0] if repeat == 1 else nn.Sequential(*copies)), x


TEMPLATES: dict[str, Any] = {}  # the config's `define:` by lower-case name (set by build)


def _instance(kind: str, args: dict[str, Any], x: torch.Tensor) -> nn.Module:
    """A template instance: its layers in an nn.Sequential, every "${...}" worked out by Python's own
    integer arithmetic, `in` the channels of (N, C, ...) or the features of (N, F)."""
    spec = TEMPLATES[kind]
    env = {**(spec.get("args") or {}), **args, "in_": x.shape[1] if x.dim() > 2 else x.shape[-1]}
    return _sequence(_evaluated(spec["layers"], env), x)[0]


def _evaluated(value: Any, env: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        # `in` is a Python keyword: read as in_
        return eval(re.sub(r"\bin\b", "in_", value[2:-1]), {"__builtins__": {}, "min": min, "max": max}, env)  # noqa: S307
    if isinstance(value, dict):
        return {k: _evaluated(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_evaluated(v, env) for v in value]
    return value


def _sequence(entries: list[Any], x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    modules = []
    for entry in entries:
        module, x = _entry(entry, x)
        modules.append(module)
    return nn.Sequential(*modules), x


def input_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """The full input shape, batch first."""
    shape = config["input"]
    if isinstance(shape, str):
        shape = [int(v) for v in shape.lower().split("x")]
    return (config.get("batch", 1), *shape)


def reduced(config: dict[str, Any]) -> dict[str, Any]:
    """A big volumetric config (a video net's 16x112x112 clip) at a 4x32x32 clip, and a Mamba
    language model (whose torch scan is a Python loop over every position of every layer) at 32
    tokens, so the oracle's forward passes stay cheap; every count follows the same formulas at any size."""
    shape = config["input"]
    if isinstance(shape, list) and len(shape) == 4 and shape[1] * shape[2] * shape[3] > 100_000:
        return {**config, "input": [shape[0], 4, 32, 32]}
    if isinstance(shape, list) and len(shape) == 1 and shape[0] > 32 and "'mamba'" in repr(config["layers"]):
        return {**config, "input": [32]}
    return config


def _first_kind(entries: list[Any]) -> str:
    """The type of the layer that runs first (looking into blocks)."""
    entry = entries[0]
    if isinstance(entry, str):
        return entry.lower()
    (kind,) = [k for k in entry if k not in ENTRY_KEYS]
    if kind.lower() in TEMPLATES:
        return _first_kind(TEMPLATES[kind.lower()]["layers"])
    args = entry[kind] or {}
    nested = args.get("layers") or args.get("body") or next((b for b in args.get("branches", []) if b), None)
    return _first_kind(nested) if nested else kind.lower()


def example(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """An input for the model: zeros, integer token ids for a model that starts with an embedding."""
    return torch.zeros(shape, dtype=torch.long if getattr(model, "token_input", False) else torch.float32)


def build(config: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """The torch model of a config (eval mode) and its full input shape."""
    shape = input_shape(config)
    TEMPLATES.clear()
    TEMPLATES.update({name.lower(): spec for name, spec in (config.get("define") or {}).items()})
    tokens = _first_kind(config["layers"]) == "embedding"
    NAMED.clear()
    model, _ = _sequence(config["layers"], torch.zeros(shape, dtype=torch.long if tokens else torch.float32))
    model.token_input = tokens
    return model.eval(), shape


def _leaves(module: nn.Module) -> Iterator[nn.Module]:
    """The modules a config's leaf layers stand for: torch leaves, and each attention or recurrent module whole."""
    if isinstance(module, (*WHOLE, Recurrent, Mamba)) or not list(module.children()):
        if not isinstance(module, nn.Sequential):
            yield module
        return
    for child in module.children():
        yield from _leaves(child)


def counts(model: nn.Module, shape: tuple[int, ...], fused: bool = True, explicit: bool = False) -> dict[str, Any]:
    """What PyTorch says: params, buffers, MACs (FlopCounterMode / 2), leaf output shapes.

    As users see it by default: FlopCounterMode on the eval model under torch.no_grad() (fused fast
    paths: nn.LSTM's oneDNN kernel counts 0, SDPA is unseen). fused=False turns oneDNN off, so nn.LSTM
    runs as matrix products FlopCounterMode sees; explicit=True runs attention as explicit matmuls.
    """
    # count before attaching hooks: a hook anywhere inside nn.TransformerEncoderLayer turns off its fast path
    counter = FlopCounterMode(display=False)
    with contextlib.ExitStack() as stack:
        if explicit:
            stack.enter_context(explicit_attention())
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")  # oneDNN's flags() warns about an unrelated TF32 setting
        stack.enter_context(torch.backends.mkldnn.flags(enabled=fused))
        with torch.no_grad(), counter:
            model(example(model, shape))
    leaves: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: leaves.append(tuple(o.shape))) for m in _leaves(model)]
    with torch.no_grad():
        y = model(example(model, shape))
    for h in hooks:
        h.remove()
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "buffers": sum(b.numel() for b in model.buffers()),
        "macs": flops // 2,
        "output_shape": tuple(y.shape),
        "leaf_shapes": leaves,
    }
