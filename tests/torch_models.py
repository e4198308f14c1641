"""The PyTorch oracle (tests only): a config dict -> the equivalent torch.nn model, and what
PyTorch itself says about it: parameters, buffers, FlopCounterMode / 2, every leaf's output shape.

It re-implements the config semantics with torch.nn independently of layercalc: input sizes
come from running a real tensor through each module as it is built, never from shape formulas.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

INFERRED = {"in_channels", "in_features", "num_features", "normalized_shape", "num_channels"}


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

    def __init__(self, positions: int, width: int) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.randn(positions, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pos_embedding.shape[0]:  # a slice would silently broadcast one row
            raise ValueError(f"sequence length {x.shape[1]} > {self.pos_embedding.shape[0]} positions")
        return x + self.pos_embedding[: x.shape[1]]


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


NAMED: dict[str, nn.Module] = {}  # modules by config name while building (for tied weights)


def _sequence_leaf(kind: str, a: dict[str, Any], x: torch.Tensor) -> nn.Module | None:
    """The sequence-model types (None for any other kind)."""
    if kind == "embedding":
        return nn.Embedding(**a)
    if kind == "posembedding":
        return PosEmbedding(a.get("num_positions") or x.shape[1], x.shape[-1])
    if kind == "clstoken":
        return ClsToken(x.shape[-1])
    if kind == "rmsnorm":
        return nn.RMSNorm(x.shape[-1], **a)
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
    c = x.shape[1] if x.dim() > 1 else None
    sequence = _sequence_leaf(kind, a, x)
    if sequence is not None:
        return sequence
    if kind == "linear":
        return nn.Linear(x.shape[-1], **a)
    if kind in ("conv1d", "conv2d"):
        return getattr(nn, "Conv" + kind[-2:])(c, **a)
    if kind == "convtranspose2d":
        return nn.ConvTranspose2d(c, **a)
    if kind in ("batchnorm1d", "batchnorm2d"):
        return getattr(nn, "BatchNorm" + kind[-2:])(c, **a)
    if kind == "layernorm":
        return nn.LayerNorm(x.shape[-1], **a)
    if kind == "groupnorm":
        return nn.GroupNorm(num_channels=c, **a)
    names = {
        "maxpool1d": "MaxPool1d", "maxpool2d": "MaxPool2d", "avgpool1d": "AvgPool1d", "avgpool2d": "AvgPool2d",
        "adaptiveavgpool1d": "AdaptiveAvgPool1d", "adaptiveavgpool2d": "AdaptiveAvgPool2d",
        "adaptivemaxpool1d": "AdaptiveMaxPool1d", "adaptivemaxpool2d": "AdaptiveMaxPool2d",
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
        (kind,) = [k for k in entry if k not in ("name", "repeat")]
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
        else:
            module = _leaf(kind, args, x)
        if isinstance(entry, dict) and "name" in entry:
            NAMED[entry["name"]] = module
        module.eval()
        with torch.no_grad():
            x = module(x)
        copies.append(module)
    return (copies[0] if repeat == 1 else nn.Sequential(*copies)), x


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


def _first_kind(entries: list[Any]) -> str:
    """The type of the layer that runs first (looking into blocks)."""
    entry = entries[0]
    if isinstance(entry, str):
        return entry.lower()
    (kind,) = [k for k in entry if k not in ("name", "repeat")]
    args = entry[kind] or {}
    nested = args.get("layers") or args.get("body") or next((b for b in args.get("branches", []) if b), None)
    return _first_kind(nested) if nested else kind.lower()


def example(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """An input for the model: zeros, integer token ids for a model that starts with an embedding."""
    return torch.zeros(shape, dtype=torch.long if getattr(model, "token_input", False) else torch.float32)


def build(config: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """The torch model of a config (eval mode) and its full input shape."""
    shape = input_shape(config)
    tokens = _first_kind(config["layers"]) == "embedding"
    NAMED.clear()
    model, _ = _sequence(config["layers"], torch.zeros(shape, dtype=torch.long if tokens else torch.float32))
    model.token_input = tokens
    return model.eval(), shape


def counts(model: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    """What PyTorch says: params, buffers, MACs (FlopCounterMode / 2), leaf output shapes."""
    leaves: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: leaves.append(tuple(o.shape)))
        for m in model.modules()
        if not list(m.children()) and not isinstance(m, (nn.Sequential,))
    ]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
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
