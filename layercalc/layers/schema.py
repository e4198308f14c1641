"""A layer type's vocabulary: shapes, argument schemas (an argument's name, converter and default)
and how the arguments column abbreviates them. Pure Python, no NumPy."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from ..errors import SchemaError
from .geometry import DIM_WORDS, per_dim

Shape = tuple[int, ...]  # always with the batch dimension first

_REQUIRED = object()


class Arg:
    """One argument of a layer type: PyTorch name, a converter that validates it, a default."""

    def __init__(self, name: str, convert: Callable[[Any], Any], default: Any = _REQUIRED, doc: str = "") -> None:
        self.name = name
        self.convert = convert
        self.default = default
        self.doc = doc

    @property
    def required(self) -> bool:
        """True when the argument has no default."""
        return self.default is _REQUIRED

    @property
    def nested(self) -> bool:
        """True when the value is a list of layer entries (or of such lists) the loader must parse."""
        return isinstance(self.convert, LayerList)

    def describe(self) -> str:
        """The argument as the catalog shows it: 'name' or 'name=default'."""
        if self.required:
            return self.name
        return f"{self.name}={_show(self.default)}"


# -- converters: raw config value -> validated Python value, or SchemaError ------------------------


def _is_int(v: Any) -> bool:
    # YAML's `true` is a bool, and bool is an int subclass in Python: a size is never a bool.
    return isinstance(v, int) and not isinstance(v, bool)


def _bad(what: str, value: Any) -> SchemaError:
    # a whole float as written (3.0), so "expected an integer, got 3" never stands for one
    shown = repr(value) if isinstance(value, float) and value.is_integer() else _show(value)
    return SchemaError(f"{what}, got {shown}", value=value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


class Int:
    """An integer >= low (no bools, no floats)."""

    def __init__(self, low: int = 1) -> None:
        self.low = low

    def __call__(self, v: Any) -> int:
        if not _is_int(v) or v < self.low:
            raise _bad(f"expected an integer >= {self.low}", v)
        return int(v)


class Opt:
    """null (a default worked out from the input or other arguments) or what `inner` accepts."""

    def __init__(self, inner: Callable[[Any], Any]) -> None:
        self.inner = inner

    def __call__(self, v: Any) -> Any:
        return None if v is None else self.inner(v)


class Float:
    """A number within [low, high]."""

    def __init__(self, low: float = -math.inf, high: float = math.inf) -> None:
        self.low, self.high = low, high

    def __call__(self, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (self.low <= v <= self.high) or v != v:
            rng = "a number" if self.low == -math.inf else f"a number in [{self.low:g}, {self.high:g}]"
            raise _bad(f"expected {rng}", v)
        return float(v)


class Bool:
    """true or false (not 0/1, not strings)."""

    def __call__(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise _bad("expected true or false", v)
        return v


class Choice:
    """One of a few strings."""

    def __init__(self, *options: str) -> None:
        self.options = options

    def __call__(self, v: Any) -> str:
        if v not in self.options:
            raise _bad("expected one of " + ", ".join(self.options), v)
        return v


class Ints:
    """An int or a list of ints (>= low), one per spatial dim: exactly `rank` of them (geometry's
    `per_dim` rule), or 1 to 3 when rank is None (the input decides); null elements when nullable."""

    def __init__(self, low: int = 1, rank: int | None = 2, nullable: bool = False, words: tuple[str, ...] = ()) -> None:
        self.low, self.rank, self.nullable, self.words = low, rank, nullable, words

    def _one(self, v: Any) -> int | None:
        if v is None and self.nullable:
            return None
        if not _is_int(v) or v < self.low:
            raise SchemaError("")  # replaced below with the whole value
        return int(v)

    def __call__(self, v: Any) -> Any:
        if isinstance(v, str) and v in self.words:
            return v
        try:
            value = tuple(self._one(e) for e in v) if isinstance(v, list) and v else self._one(v)
        except SchemaError:
            what = f"an integer >= {self.low}" + ("" if self.rank == 1 else " or " + DIM_WORDS.get(self.rank, "a list of one per spatial dim"))
            if self.words:
                what += " or " + " or ".join(repr(w) for w in self.words)
            raise _bad(f"expected {what}", v) from None
        if isinstance(value, tuple):  # a list of the wrong length: the one rule of every N-d argument
            per_dim(value, self.rank or min(len(value), 3))
        return value


class Index:
    """Any integer: a position that may count back from the end when negative."""

    def __call__(self, v: Any) -> int:
        if not _is_int(v):
            raise _bad("expected an integer (negative counts back from the end)", v)
        return int(v)


class IntList:
    """A list of 1..64 integers (or one integer), each >= low or one of the extra values."""

    def __init__(self, low: int, extra: tuple[int, ...] = (), what: str = "") -> None:
        self.low, self.extra, self.what = low, extra, what

    def __call__(self, v: Any) -> tuple[int, ...]:
        items = v if isinstance(v, list) else [v]
        if not 1 <= len(items) <= 64 or not all(_is_int(e) and (e >= self.low or e in self.extra) for e in items):
            raise _bad(f"expected {self.what}", v)
        return tuple(int(e) for e in items)


class Name:
    """Another layer's name: a non-empty string without dots."""

    def __call__(self, v: Any) -> str:
        if not isinstance(v, str) or not v or "." in v:
            raise _bad("expected a layer name", v)
        return v


class LayerList:
    """Marks an argument whose value is a list of layer entries (depth 1) or a list of such lists."""

    def __init__(self, depth: int = 1, min_len: int = 1) -> None:
        self.depth = depth
        self.min_len = min_len  # at the outer level: how many entries (or branches) at least

    def __call__(self, v: Any) -> Any:  # the loader parses these; nothing to convert here
        return v

# How the arguments column abbreviates an argument: a label of one or two letters is joined to its
# value (k3 s2 p1), a longer one with "=" (heads=12); an argument not listed keeps its PyTorch name.
ARG_LABELS: dict[str, str] = {
    "kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "groups": "g",
    "output_padding": "op", "hidden_size": "h", "num_heads": "heads", "nhead": "heads",
    "num_kv_heads": "kv_heads", "num_layers": "layers", "dim_feedforward": "ff",
    "num_embeddings": "vocab", "embedding_dim": "dim", "output_size": "out", "scale_factor": "scale",
    "upscale_factor": "r", "num_groups": "groups", "negative_slope": "slope", "proj_size": "proj",
}


def brief_arg(arg: Arg, value: Any) -> str:
    """One non-default argument, compact: k3, k3x5, s2, no_bias, ceil_mode, bilinear, eps=0.001."""
    short = ARG_LABELS.get(arg.name)
    label = short or arg.name
    if isinstance(value, bool):  # a switch reads as its name, or no_<name> when turned off
        return label if value else f"no_{label}"
    if isinstance(arg.convert, Choice):  # a mode reads as itself
        return str(value)
    if isinstance(value, tuple):
        # sizes per spatial dim read as one number when equal (3x3 -> 3); other lists as 0,2,1
        sizes = isinstance(arg.convert, Ints)
        text = str(value[0]) if sizes and len(set(value)) == 1 else ("x" if sizes else ",").join(map(str, value))
    else:
        text = _show(value).strip("'")
    joined = short is not None and len(short) <= 2 and not isinstance(value, str)
    return label + text if joined else f"{label}={text}"


def equals_default(value: Any, default: Any) -> bool:
    """A value equals its default, a size tuple (1, 1) included when the default is 1."""
    if isinstance(value, tuple) and not isinstance(default, tuple):
        return all(v == default for v in value)
    return value == default


# how messages name an input of 1, 2 or 3 spatial dims
LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def numel(shape: Sequence[int]) -> int:
    """Number of elements of a shape (1 for a scalar shape ())."""
    return math.prod(shape)


def fmt_shape(shape: Sequence[int | None]) -> str:
    """(1, 64, 56, 56) -> '1x64x56x56'."""
    return "x".join(str(s) for s in shape)
