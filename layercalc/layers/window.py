"""Window attention (Swin): windowattention (torchvision's ShiftedWindowAttention) and patchmerging
(torchvision's PatchMerging), both on channels-last maps (N, H, W, C).

windowattention pads H and W up to whole windows, Hp = ⌈H/wh⌉·wh and Wp = ⌈W/ww⌉·ww (zeros, which
then take part in the attention as keys), rolls the map by -shift, cuts it into (Hp/wh)·(Wp/ww)
windows of L = wh·ww tokens and runs multi-head self-attention inside each, with a learned bias per
relative offset and, when shifted, -100 added between tokens that came from different regions of
the unrolled map; then the inverse roll and the padding cut off. A dim whose window covers the whole
padded size (wh ≥ Hp) is not shifted.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ShapeError
from ..lazy import np
from .base import Arg, Float, Int, Ints, Layer, Saved, Shape, fmt_shape, numel, register
from .cost import CostModel
from .counting import Grad
from .linear import Linear
from .norm import LayerNorm
from .peers import ATTN, CONV, row, rules

MASKED = -100.0  # torchvision's logit for a pair of tokens from different regions (not -inf)


def _channels_last(layer: Layer, x: Shape) -> None:
    layer.expect_rank(x, 4, layout="(N, H, W, C)")


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    """An int or a pair as (h, w)."""
    return (v, v) if isinstance(v, int) else (v[0], v[1])


@register
class WindowAttention(Layer):
    type_name = "windowattention"
    summary = "Swin's (shifted) window self-attention, torchvision's ShiftedWindowAttention on (N, H, W, C)"
    args = (
        Arg("num_heads", Int()),
        Arg("window_size", Ints()),
        Arg("shift_size", Ints(low=0), 0,
            "the roll before the windows are cut; 0 along a dim whose window ≥ its padded size"),
        Arg("attention_dropout", Float(low=0.0, high=1.0), 0.0,
            "on the attention weights while training; none in eval"),
        Arg("dropout", Float(low=0.0, high=1.0), 0.0, "on the output while training; none in eval"),
    )
    shape_rule = ("unchanged: (N, H, W, C); num_heads divides C; shift_size < window_size per dim;"
                  " Hp = ⌈H/wh⌉·wh, Wp = ⌈W/ww⌉·ww (the zero-padded map the windows tile)")
    params_rule = ("relative_position_bias_table (2·wh−1)(2·ww−1)·num_heads, qkv.weight 3C·C, qkv.bias 3C,"
                   " proj.weight C·C, proj.bias C")
    buffers_rule = "relative_position_index (wh·ww)² (persistent: in the state dict)"
    macs_rule = ("N·Hp·Wp·4C² (qkv and proj on the padded map) + 2·N·(Hp/wh)(Wp/ww)·num_heads·(wh·ww)²·d"
                 " (q·kᵀ and A·v in each window), d = C / num_heads")
    peer_rules = rules(
        torch="as layercalc", fvcore="as layercalc",
        ptflops=("N·(Hp/wh)(Wp/ww)·num_heads·(wh·ww)²·(2d + 1): its Tensor.matmul and F.softmax patches, not"
                 " divided by the batch; the projections run as F.linear, which it does not patch"),
    )
    inert_args = ("attention_dropout", "dropout")
    example = ([4, 4, 8], {"num_heads": 2, "window_size": 2, "shift_size": 1})

    num_heads: int
    window_size: int | tuple[int, ...]
    shift_size: int | tuple[int, ...]
    attention_dropout: float
    dropout: float

    # -- geometry ------------------------------------------------------------------------------------
    def window(self) -> tuple[int, int]:
        """(wh, ww)."""
        return _pair(self.window_size)

    def padded(self, x: Shape) -> tuple[int, int]:
        """(Hp, Wp): H and W rounded up to whole windows."""
        (wh, ww), (h, w) = self.window(), (x[1], x[2])
        return -(-h // wh) * wh, -(-w // ww) * ww

    def shift(self, x: Shape) -> tuple[int, int]:
        """The shift that runs: none along a dim one window covers (torchvision sets it to 0 there)."""
        (wh, ww), (hp, wp), (sh, sw) = self.window(), self.padded(x), _pair(self.shift_size)
        return (0 if wh >= hp else sh), (0 if ww >= wp else sw)

    def windows(self, x: Shape) -> int:
        """Windows per sample: (Hp/wh)·(Wp/ww)."""
        (wh, ww), (hp, wp) = self.window(), self.padded(x)
        return (hp // wh) * (wp // ww)

    def output_shape(self, x: Shape) -> Shape:
        _channels_last(self, x)
        if x[3] % self.num_heads:
            raise ShapeError(f"num_heads {self.num_heads} does not divide the channels {x[3]} of {fmt_shape(x)}",
                             value=self.num_heads)
        for dim, (w, s) in zip("hw", zip(self.window(), _pair(self.shift_size))):
            if s >= w:  # the mask's three regions per dim need shift < window
                raise ShapeError(f"shift_size {s} is not below window_size {w} along {dim}", value=s)
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        (wh, ww), c = self.window(), x[3]
        # parameters() order: the module's own table first, then its qkv and proj linears
        return {"relative_position_bias_table": ((2 * wh - 1) * (2 * ww - 1), self.num_heads),
                "qkv.weight": (3 * c, c), "qkv.bias": (3 * c,), "proj.weight": (c, c), "proj.bias": (c,)}

    def buffer_shapes(self, x: Shape) -> dict[str, Shape]:
        length = self.window()[0] * self.window()[1]
        return {"relative_position_index": (length * length,)}

    # -- cost ----------------------------------------------------------------------------------------
    def projection_macs(self, x: Shape) -> int:
        """qkv (3C outputs) and proj on every position of the padded map: N·Hp·Wp·4C²."""
        hp, wp = self.padded(x)
        return 4 * x[0] * hp * wp * x[3] * x[3]

    def core_macs(self, x: Shape) -> int:
        """q·kᵀ and A·v in every window: 2·N·windows·heads·L²·d = 2·N·windows·L²·C."""
        length = self.window()[0] * self.window()[1]
        return 2 * x[0] * self.windows(x) * length * length * x[3]

    def macs(self, x: Shape, y: Shape) -> int:
        return self.projection_macs(x) + self.core_macs(x)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        proj, core = self.projection_macs(x), self.core_macs(x)
        length = self.window()[0] * self.window()[1]
        scores = x[0] * self.windows(x) * self.num_heads * length * length
        # FlopCounterMode and fvcore see F.linear and both matmuls; the linears' modules are never
        # called (their weights go to F.linear), so the tools that hook modules see nothing of them.
        # ptflops patches Tensor.matmul (q·kᵀ, A·v) and F.softmax (one per score), outside its hooks
        return [
            row(CONV, layercalc=proj, torch=proj, fvcore=proj),
            row(ATTN, layercalc=core, torch=core, fvcore=core, ptflops=(0, core + scores)),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # qkv: ∇W always, ∇x when needed; proj: ∇W and ∇(its input) always; q·kᵀ and A·v: dq, dk,
        # dA and dv, twice the forward's products (plain matmuls: every counter sees them)
        proj = self.projection_macs(x)
        qkv, out = 3 * proj // 4, proj // 4
        grads = [Grad(qkv, weight=True)] + ([Grad(qkv, weight=False)] if input_grad else [])
        return grads + [Grad(out, weight=True), Grad(out, weight=False), Grad(2 * self.core_macs(x), weight=False)]

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # the windows (qkv's input: the padded, rolled map), q, k, v, the softmax of the scores (and
        # with attention dropout its mask and output), the heads' output (proj's input)
        hp, wp = self.padded(x)
        grid = x[0] * hp * wp * x[3]
        length = self.window()[0] * self.window()[1]
        scores = x[0] * self.windows(x) * self.num_heads * length * length
        saved = [Saved(grid, x[3]), Saved(grid, 0), Saved(grid, 0), Saved(grid, 0), Saved(grid, 0), Saved(scores, 0)]
        if self.attention_dropout > 0:
            saved += [Saved(scores, 0, mask=True), Saved(scores, 0)]
        if self.dropout > 0:
            saved.append(Saved(grid, x[3], mask=True))
        return saved

    def work_elements(self, x: Shape) -> int:
        # per window and head, the L×L scores and softmax kept, and at the backward's peak three
        # more of that size; about ten padded maps (windows, q, k, v, their gradients, rolls)
        hp, wp = self.padded(x)
        length = self.window()[0] * self.window()[1]
        return 5 * x[0] * self.windows(x) * self.num_heads * length * length + 10 * x[0] * hp * wp * x[3]

    # -- NumPy ---------------------------------------------------------------------------------------
    def relative_index(self) -> Any:
        """(L·L,) row of the bias table for each (query i, key j) of a window, tokens row-major:
        (Δh + wh − 1)·(2·ww − 1) + (Δw + ww − 1), Δ = position of i − position of j."""
        wh, ww = self.window()
        rows, cols = np.divmod(np.arange(wh * ww), ww)
        dh = rows[:, None] - rows[None, :] + wh - 1
        dw = cols[:, None] - cols[None, :] + ww - 1
        return (dh * (2 * ww - 1) + dw).reshape(-1)

    def region_mask(self, x: Shape, dtype: Any) -> Any:
        """(windows, L, L): 0 between tokens of one region of the rolled map, -100 between regions.

        Along a shifted dim the rolled map holds three regions: [0, P−w), [P−w, P−s), [P−s, P) (P the
        padded size); the last brought round from the start. Unshifted, the boundary P−w is a window edge.
        """
        (wh, ww), (hp, wp), (sh, sw) = self.window(), self.padded(x), self.shift(x)

        def regions(size: int, w: int, s: int) -> Any:
            p = np.arange(size)
            return (p >= size - w).astype(np.int64) + (p >= size - s if s else 0)

        labels = regions(hp, wh, sh)[:, None] * 3 + regions(wp, ww, sw)[None, :]
        labels = _partition(labels[None, :, :, None], (wh, ww))[:, :, 0]  # (windows, L)
        return np.where(labels[:, :, None] == labels[:, None, :], 0.0, MASKED).astype(dtype)

    def to_windows(self, t: Any) -> Any:
        """(N, H, W, C) -> (N·windows, L, C): zero-padded to (Hp, Wp), rolled by -shift, cut into windows."""
        n, height, width, c = t.shape
        (hp, wp), (sh, sw) = self.padded(t.shape), self.shift(t.shape)
        grid = np.zeros((n, hp, wp, c), dtype=t.dtype)
        grid[:, :height, :width] = t
        return _partition(np.roll(grid, (-sh, -sw), axis=(1, 2)), self.window())

    def from_windows(self, t: Any, shape: Shape) -> Any:
        """The adjoint of to_windows for input shape: windows put back, rolled by +shift, the padding cut off."""
        (hp, wp), (sh, sw) = self.padded(shape), self.shift(shape)
        grid = _merge(t, shape[0], (hp, wp), self.window())
        return np.roll(grid, (sh, sw), axis=(1, 2))[:, :shape[1], :shape[2]]

    def bias_grad(self, ds: Any, table: Any) -> Any:
        """dL/d(table) from dL/d(scores) (B, h, L, L): each row gathers every (i, j) pair, window
        and sample whose offset it indexes."""
        grad = np.zeros_like(table)
        np.add.at(grad, self.relative_index(), ds.sum(axis=0).reshape(ds.shape[1], -1).T)
        return grad

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        n, c, h = x.shape[0], x.shape[3], self.num_heads
        wins = self.to_windows(x)
        b, length = wins.shape[:2]
        qkv = wins @ params["qkv.weight"].T + params["qkv.bias"]
        q, k, v = qkv.reshape(b, length, 3, h, c // h).transpose(2, 0, 3, 1, 4)  # each (B, h, L, d)
        q = q * (1.0 / math.sqrt(c // h))
        bias = params["relative_position_bias_table"][self.relative_index()]  # (L·L, h)
        s = q @ k.swapaxes(-1, -2) + bias.T.reshape(1, h, length, length)
        if any(self.shift(x.shape)):  # one mask for every sample: the window index varies fastest in B
            mask = self.region_mask(x.shape, x.dtype)[None, :, None]
            s = (s.reshape(n, -1, h, length, length) + mask).reshape(s.shape)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)
        heads = (a @ v).transpose(0, 2, 1, 3).reshape(b, length, c)
        out = heads @ params["proj.weight"].T + params["proj.bias"]
        return self.from_windows(out, x.shape), (x.shape, wins, q, k, v, a, heads)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        shape, wins, q, k, v, a, heads = cache
        c, h = shape[3], self.num_heads
        b, length = wins.shape[:2]
        dout = self.to_windows(dy)  # the adjoint of from_windows
        grads = {"proj.weight": _flat(dout).T @ _flat(heads), "proj.bias": _flat(dout).sum(axis=0)}
        do = (dout @ params["proj.weight"]).reshape(b, length, h, c // h).transpose(0, 2, 1, 3)
        dv = a.swapaxes(-1, -2) @ do
        da = do @ v.swapaxes(-1, -2)
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))  # softmax's Jacobian; the mask is a constant
        grads["relative_position_bias_table"] = self.bias_grad(ds, params["relative_position_bias_table"])
        dq = (ds @ k) * (1.0 / math.sqrt(c // h))  # q was scaled before q·kᵀ
        dk = ds.swapaxes(-1, -2) @ q
        dqkv = np.stack([dq, dk, dv], axis=2).transpose(0, 3, 2, 1, 4).reshape(b, length, 3 * c)
        grads["qkv.weight"] = _flat(dqkv).T @ _flat(wins)
        grads["qkv.bias"] = _flat(dqkv).sum(axis=0)
        return self.from_windows(dqkv @ params["qkv.weight"], shape), grads


def _partition(t: Any, window: tuple[int, int]) -> Any:
    """(N, Hp, Wp, C) -> (N·windows, wh·ww, C): windows row-major, tokens row-major inside each."""
    n, hp, wp, c = t.shape
    wh, ww = window
    t = t.reshape(n, hp // wh, wh, wp // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return t.reshape(n * (hp // wh) * (wp // ww), wh * ww, c)


def _merge(t: Any, n: int, size: tuple[int, int], window: tuple[int, int]) -> Any:
    """The inverse of _partition: (N·windows, wh·ww, C) -> (N, Hp, Wp, C)."""
    (hp, wp), (wh, ww), c = size, window, t.shape[-1]
    t = t.reshape(n, hp // wh, wp // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return t.reshape(n, hp, wp, c)


def _flat(t: Any) -> Any:
    """(..., F) -> (positions, F)."""
    return t.reshape(-1, t.shape[-1])


@register
class PatchMerging(Layer):
    """torchvision's PatchMerging: each 2×2 patch's four C-vectors joined (rows first: (0,0), (1,0),
    (0,1), (1,1)), a layernorm over the 4C and a linear 4C→2C without bias. An odd H or W is
    zero-padded by one first. Its parameters carry torchvision's names, in parameters() order."""

    type_name = "patchmerging"
    summary = "Swin's patch merging (torchvision's PatchMerging): 2x2 patches joined, layernorm, linear 4C→2C"
    shape_rule = "(N, H, W, C) -> (N, ⌈H/2⌉, ⌈W/2⌉, 2C); an odd H or W is zero-padded by one"
    params_rule = "reduction.weight 2C·4C (no bias), norm.weight 4C, norm.bias 4C: 8C² + 8C"
    macs_rule = "N·⌈H/2⌉·⌈W/2⌉·4C·2C (the reduction linear; the layernorm 0, as every norm)"
    peer_rules = rules(
        torch="as layercalc",
        fvcore="as layercalc, + the layernorm as fvcore counts layernorm",
        thop="as layercalc, + the layernorm as thop counts layernorm",
        ptflops="as layercalc, + the layernorm as ptflops counts layernorm",
        torchinfo="the reduction and the layernorm as torchinfo counts linear and layernorm",
    )
    example = ([3, 5, 2], {})

    def children(self, x: Shape) -> dict[str, tuple[Layer, Shape]]:
        """The reduction linear and the norm, by torchvision's attribute names, each with its input shape."""
        joined = (x[0], -(-x[1] // 2), -(-x[2] // 2), 4 * x[3])
        return {"reduction": (Linear(out_features=2 * x[3], bias=False), joined), "norm": (LayerNorm(), joined)}

    def output_shape(self, x: Shape) -> Shape:
        _channels_last(self, x)
        return (x[0], -(-x[1] // 2), -(-x[2] // 2), 2 * x[3])

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {f"{name}.{p}": s for name, (layer, shape) in self.children(x).items()
                for p, s in layer.param_shapes(shape).items()}

    def macs(self, x: Shape, y: Shape) -> int:
        layer, shape = self.children(x)["reduction"]
        return layer.macs(shape, y)

    def peer_parts(self, x: Shape) -> list[tuple[CostModel, Shape]]:
        return list(self.children(x).values())

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # the reduction reads the norm's output, which depends on the norm's parameters: both gradients
        layer, shape = self.children(x)["reduction"]
        return layer.backward_parts(shape, y, True)

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # the joined patches (the norm's input) and the norm's output (the reduction's input)
        joined = self.children(x)["norm"][1]
        return [Saved(numel(joined), joined[-1]), Saved(numel(joined), joined[-1])]

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        n, height, width, c = x.shape
        grid = np.zeros((n, height + height % 2, width + width % 2, c), dtype=x.dtype)
        grid[:, :height, :width] = x
        joined = np.concatenate([grid[:, i::2, j::2] for i, j in _CORNERS], axis=-1)
        kids = self.children(x.shape)
        normed, norm_cache = kids["norm"][0].forward(joined, _own(params, "norm"))
        y, red_cache = kids["reduction"][0].forward(normed, _own(params, "reduction"))
        return y, (x.shape, kids, norm_cache, red_cache)

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        shape, kids, norm_cache, red_cache = cache
        n, height, width, c = shape
        dnormed, red = kids["reduction"][0].backward(dy, _own(params, "reduction"), red_cache)
        djoined, norm = kids["norm"][0].backward(dnormed, _own(params, "norm"), norm_cache)
        grads = {**{f"reduction.{k}": g for k, g in red.items()}, **{f"norm.{k}": g for k, g in norm.items()}}
        dgrid = np.zeros((n, height + height % 2, width + width % 2, c), dtype=dy.dtype)
        for part, (i, j) in enumerate(_CORNERS):  # each corner's channels go back to its positions
            dgrid[:, i::2, j::2] = djoined[..., part * c:(part + 1) * c]
        return dgrid[:, :height, :width], grads


_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))  # torchvision's x0, x1, x2, x3


def _own(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A child's parameters, without the child's name prefix."""
    prefix = name + "."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
