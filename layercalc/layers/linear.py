"""linear: z = W x + b on the last dimension."""

from __future__ import annotations

from typing import Any

from .counting import Grad
from .peers import BIAS, CONV, row, rules
from .base import Arg, Bool, Int, Layer, Name, Opt, Shape, numel, register


@register
class Linear(Layer):
    type_name = "linear"
    summary = "z = W x + b, acting on the last dimension"
    args = (
        Arg("out_features", Int()),
        Arg("bias", Bool(), True),
        Arg("in_features", Opt(Int()), None, "inferred from the input"),
        Arg("tied_to", Opt(Name()), None, "an earlier embedding's name: use its (V, D) weight, adding no params"),
    )
    feature_dim = -1  # features: 512→1000
    input_for_weights = True
    feature_args = ("in_features", "out_features")
    shape_rule = "(N, ..., in_features) -> (N, ..., out_features); in_features is the input's last dim"
    params_rule = ("weight out_features·in_features, + bias out_features if bias;"
                   " a tied_to weight is the embedding's and adds none")
    macs_rule = "numel(y)·in_features = N·(leading dims)·in_features·out_features"
    peer_rules = rules(
        torch="as layercalc", fvcore="as layercalc", thop="as layercalc",
        ptflops="as layercalc, + numel(y) for the bias if bias",
        torchinfo="N·in_features·out_features (+ N·out_features if bias): params × output.shape[0], middle dims lost",
    )
    example = ([4], {"out_features": 3})

    out_features: int
    bias: bool
    in_features: int | None
    tied_to: str | None

    def shared_params(self) -> dict[str, str]:
        # a language model's output head reuses the token embedding's table as its weight
        return {"weight": self.tied_to} if self.tied_to else {}

    def output_shape(self, x: Shape) -> Shape:
        self.expect_rank(x, *range(2, 9), layout="(N, ..., features)")
        self.expect_size("in_features", self.in_features, x[-1])
        return (*x[:-1], self.out_features)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (self.out_features, x[-1])}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def macs(self, x: Shape, y: Shape) -> int:
        # N · (leading dims) · n_in · n_out: each output element is a dot product of length n_in.
        return numel(y) * x[-1]

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        macs, bias = self.macs(x, y), numel(y) if self.bias else 0
        # torchinfo multiplies the parameter count by output.shape[0] only: middle dims are lost
        n, k, o = x[0], x[-1], self.out_features
        return [
            row(CONV, layercalc=macs, torch=macs, fvcore=macs, thop=macs, ptflops=(macs, 0), torchinfo=n * k * o),
            row(BIAS, ptflops=(bias, 0), torchinfo=n * o if self.bias else 0),
        ]

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # ∇W = ∇zᵀ x and ∇x = ∇z W each cost as much as the forward product
        macs = self.macs(x, y)
        return [Grad(macs, weight=True)] + ([Grad(macs, weight=False)] if input_grad else [])

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        # z = x Wᵀ + b on the last dim (x may carry leading dims)
        y = x @ params["weight"].T
        if self.bias:
            y += params["bias"]
        return y, x

    def backward(self, dy: Any, params: dict[str, Any], x: Any) -> tuple[Any, dict[str, Any]]:
        # ∇x = ∇z W, ∇W = ∇zᵀ x summed over every leading position, ∇b = Σ ∇z
        flat_dy = dy.reshape(-1, dy.shape[-1])
        grads = {"weight": flat_dy.T @ x.reshape(-1, x.shape[-1])}
        if self.bias:
            grads["bias"] = flat_dy.sum(axis=0)
        return dy @ params["weight"], grads
