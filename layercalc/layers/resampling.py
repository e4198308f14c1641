"""Resampling: upsample (nn.Upsample: nearest, linear, bilinear, bicubic, trilinear) and
pixelshuffle (sub-pixel convolution's rearrangement). Neither has parameters or MACs."""

from __future__ import annotations

import math
from typing import Any

from ..errors import SchemaError, ShapeError
from .base import LAYOUTS, Arg, Bool, Choice, Int, Ints, Layer, Opt, Shape, _bad, _show, fmt_shape, numel, register
from .geometry import per_dim
from .peers import RESAMPLE, row, rules

# the spatial rank each mode needs (PyTorch refuses the others); nearest takes any of 1, 2, 3
MODE_RANKS = {"nearest": (1, 2, 3), "linear": (1,), "bilinear": (2,), "bicubic": (2,), "trilinear": (3,)}
KIND = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}
# thop's ops per output element by mode (trilinear: thop logs "not implemented" and counts 0)
THOP_PER_OUTPUT = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 224 + 35, "trilinear": 0}


class Scales:
    """A number > 0, or a list of 1 to 3 of them (one per spatial dim)."""

    @staticmethod
    def _one(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v == math.inf:
            raise SchemaError("")
        return float(v)

    def __call__(self, v: Any) -> Any:
        try:
            if isinstance(v, list) and 1 <= len(v) <= 3:
                return tuple(self._one(e) for e in v)
            return self._one(v)
        except SchemaError:
            raise _bad("expected a number > 0 or a list of 1 to 3 of them", v) from None


@register
class Upsample(Layer):
    type_name = "upsample"
    summary = "interpolation of (N, C, L), (N, C, H, W) or (N, C, D, H, W) to a size or by a scale factor"
    args = (
        Arg("size", Opt(Ints(rank=None)), None, "output size: an int or one per spatial dim"),
        Arg("scale_factor", Opt(Scales()), None, "output size = floor(input size · scale_factor)"),
        Arg("mode", Choice(*MODE_RANKS), "nearest"),
        Arg("align_corners", Opt(Bool()), None, "only with linear, bilinear, bicubic, trilinear (null = false)"),
    )
    shape_rule = ("(N, C, *S) -> (N, C, *S_out), S_out = size, or floor(S·scale_factor) per spatial dim; mode"
                  " linear takes (N, C, L), bilinear and bicubic (N, C, H, W), trilinear (N, C, D, H, W), nearest any")
    params_rule = "none"
    macs_rule = "0 (interpolation weights, not multiply-accumulates)"
    peer_rules = rules(
        fvcore="numel(y) for 2-D nearest, 4·numel(y) for 2-D bilinear; other modes and ranks not counted",
        thop="numel(y) × ops per output element by mode: " + ", ".join(f"{m} {n}" for m, n in THOP_PER_OUTPUT.items()),
        ptflops=("numel(y) / N in its module hook (one sample, divided by N again) + N·C·prod(size) or"
                 " numel(x)·scale_factor^rank in its F.interpolate patch"),
    )
    inert_args = ("align_corners",)
    example = ([2, 4, 4], {"scale_factor": 2})

    size: Any
    scale_factor: Any
    mode: str
    align_corners: bool | None

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if (self.size is None) == (self.scale_factor is None):
            which = "both" if self.size is not None else "neither"
            raise SchemaError(f"set exactly one of size and scale_factor (got {which})", value={"size": self.size, "scale_factor": self.scale_factor})
        if self.mode == "nearest" and self.align_corners is not None:
            raise SchemaError(
                "align_corners can only be set with the interpolating modes: linear, bilinear, bicubic, trilinear",
                value=self.align_corners,
            )

    def output_shape(self, x: Shape) -> Shape:
        rank = len(x) - 2
        ranks = MODE_RANKS[self.mode]
        if rank not in ranks:
            want = " or ".join(LAYOUTS[r] for r in ranks)
            raise ShapeError(f"mode {self.mode!r} expects input {want}, got {fmt_shape(x)}", value=x)
        if self.size is not None:
            out = per_dim(self.size, rank, "size", ShapeError)
        else:
            # PyTorch: floor(float(L) · scale), in double precision
            out = tuple(math.floor(float(n) * s) for n, s in zip(x[2:], per_dim(self.scale_factor, rank, "scale_factor", ShapeError)))
            if min(out) < 1:
                raise ShapeError(f"scale_factor {_show(self.scale_factor)} leaves no output (size {fmt_shape(out)})", value=self.scale_factor)
        return (*x[:2], *out)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        rank = len(x) - 2
        out = numel(y)
        # fvcore has handles for the 2-D nearest (1 per output) and bilinear (4 per output) ops only
        fvcore = {("nearest", 2): out, ("bilinear", 2): 4 * out}.get((self.mode, rank))
        # ptflops: its nn.Upsample hook counts ONE sample's output (it reads output[0]), which it
        # then divides by the batch again; its F.interpolate patch counts once more: N·C·∏size, or
        # the input's elements times the scale factor to the rank (a per-dim tuple's factors each
        # truncated to an int first: numpy's int64 product)
        if self.size is not None:
            functional: float = x[0] * x[1] * (math.prod(self.size) if isinstance(self.size, tuple) else self.size**rank)
        elif isinstance(self.scale_factor, tuple):
            functional = numel(x) * math.prod(int(s) for s in self.scale_factor)
        else:
            functional = numel(x) * self.scale_factor**rank
        return [row(RESAMPLE, fvcore=fvcore, thop=THOP_PER_OUTPUT[self.mode] * out, ptflops=(out // x[0], functional))]

    def _scales(self, rank: int) -> tuple[float | None, ...]:
        return per_dim(self.scale_factor, rank, "scale_factor", ShapeError) if self.scale_factor is not None else (None,) * rank

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        from ..kernels.resample import interpolate_forward

        rank = x.ndim - 2
        out = self.output_shape(x.shape)[2:]
        return interpolate_forward(x, out, KIND[self.mode], bool(self.align_corners), self._scales(rank))

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        from ..kernels.resample import interpolate_backward

        return interpolate_backward(dy, cache), {}


@register
class PixelShuffle(Layer):
    type_name = "pixelshuffle"
    summary = "(N, C·r², H, W) -> (N, C, H·r, W·r): channels rearranged into an r-times finer grid"
    args = (Arg("upscale_factor", Int()),)
    shape_rule = "(N, C·upscale_factor², H, W) -> (N, C, H·upscale_factor, W·upscale_factor)"
    params_rule = "none"
    macs_rule = "0 (values are moved, not multiplied)"
    peer_rules = rules(thop="0 (a rule that counts nothing)")
    example = ([8, 3, 3], {"upscale_factor": 2})

    upscale_factor: int

    def output_shape(self, x: Shape) -> Shape:
        self.expect_spatial(x, 2)
        r2 = self.upscale_factor**2
        if x[1] % r2:
            raise ShapeError(
                f"channels {x[1]} are not divisible by upscale_factor² = {r2}", value=self.upscale_factor
            )
        return (x[0], x[1] // r2, x[2] * self.upscale_factor, x[3] * self.upscale_factor)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        return [row(RESAMPLE, thop=0)]  # thop registers nn.PixelShuffle with zero ops; the others skip it

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        from ..kernels.resample import pixel_shuffle_forward

        return pixel_shuffle_forward(x, self.upscale_factor), None

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        from ..kernels.resample import pixel_shuffle_backward

        return pixel_shuffle_backward(dy, self.upscale_factor), {}
