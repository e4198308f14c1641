"""The layer model: argument schemas, the Layer base class, the Node tree and the type registry.

Every layer type is one class (in this package) that owns its argument schema, its shape rule,
its parameter and buffer shapes, its cost and its NumPy forward/backward. Nothing outside this
package names a layer type: the loader, the calculator, the renderers and verify go through the
registry and these methods.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, NamedTuple, Sequence

from ..errors import Location, SchemaError, ShapeError
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
    return SchemaError(f"{what}, got {_show(value)}", value=value)


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


# -- the tree --------------------------------------------------------------------------------------


class Node(NamedTuple):
    """One config entry: a layer instance with its name, repeat count and location."""

    layer: "Layer"
    name: str
    repeat: int = 1
    loc: Location = Location()
    named: bool = False  # True when the user gave the name (then it is also the path segment)
    trainable: bool = True  # False: the entry's parameters are frozen (its own `trainable: false` or a block's)

    @property
    def label(self) -> str:
        """The layer as error messages name it: "conv2d 'conv1'"."""
        return f"{self.layer.type_name} {self.name!r}"


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


def _same(value: Any, default: Any) -> bool:
    """A value equals its default, a size tuple (1, 1) included when the default is 1."""
    if isinstance(value, tuple) and not isinstance(default, tuple):
        return all(v == default for v in value)
    return value == default


class Saved(NamedTuple):
    """A tensor autograd keeps for a layer's backward pass, for one forward of the batch.

    width: its last dim, which says how tensor parallelism treats it: a tensor as wide as the
    model (the residual stream) is replicated on every device unless the sequence is split too;
    0 marks a tensor inside attention's heads, always split.
    """

    elements: int
    width: int
    mask: bool = False  # a dropout mask: one byte an element, whatever the dtype


class Layer:
    """Base of every layer type. Subclasses set type_name, args and override the rules they need."""

    type_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for the catalog
    args: ClassVar[tuple[Arg, ...]] = ()
    # the dim whose size the layer maps from input to output (channels, features): the arguments
    # column shows it as 64→128, and then leaves out the arguments that state those sizes
    feature_dim: ClassVar[int | None] = None
    feature_args: ClassVar[tuple[str, ...]] = ()
    creates_tensor: ClassVar[bool] = True  # False for pure groupings (their output is a child's)
    kinks: ClassVar[tuple[float, ...]] = ()  # inputs where f is not differentiable; verify avoids them
    # True when the output picks among the inputs (a max): f is not differentiable where two inputs
    # tie, so verify draws the inputs of its own check distinct, a margin apart, and steps within it
    selects: ClassVar[bool] = False

    # The rules in words, as `layercalc layers TYPE` shows them; each sits next to the code it
    # describes, so the help and the arithmetic are read (and changed) together. Notation: N the
    # batch, x and y the input and output shapes, numel(s) the elements of a shape s.
    shape_rule: ClassVar[str] = ""  # output shape from input shape and arguments
    params_rule: ClassVar[str] = ""  # trainable parameters, by PyTorch attribute name
    buffers_rule: ClassVar[str] = "none"  # non-trainable state
    macs_rule: ClassVar[str] = ""  # multiply-accumulates of one forward pass of the batch
    peer_rules: ClassVar[dict[str, str]] = {}  # peer convention -> how that tool counts this type
    # arguments that change the values computed but no shape, parameter or count
    inert_args: ClassVar[tuple[str, ...]] = ()
    # a small worked example: one sample's input shape (batch excluded) and the arguments
    example: ClassVar[tuple[list[int], dict[str, Any]]] = ([], {})

    def __init__(self, **values: Any) -> None:
        for arg in self.args:
            setattr(self, arg.name, values.get(arg.name, arg.default))

    @classmethod
    def is_block(cls) -> bool:
        """True for types made of child layers (their arguments hold layer lists)."""
        return any(a.nested for a in cls.args)

    def arguments(self) -> dict[str, Any]:
        """The layer's arguments after defaults, by PyTorch name."""
        return {a.name: getattr(self, a.name) for a in self.args if not a.nested}

    def brief(self, x: Shape, y: Shape) -> str:
        """The non-default arguments, compact, for input x and output y: '3→64 k7 s2 p3 no_bias'."""
        parts = []
        if self.feature_dim is not None and len(x) > abs(self.feature_dim) and len(y) > abs(self.feature_dim):
            parts.append(f"{x[self.feature_dim]}→{y[self.feature_dim]}")
        for arg in self.args:
            if arg.nested or arg.name in self.feature_args:
                continue
            value = getattr(self, arg.name)
            # null is "worked out from the input": the shapes already show what it became
            if value is None or (not arg.required and _same(value, arg.default)):
                continue
            parts.append(brief_arg(arg, value))
        return " ".join(parts)

    # -- calculator rules (pure integer arithmetic) --
    def output_shape(self, x: Shape) -> Shape:
        """Output shape for input shape x (batch first); raises ShapeError."""
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        """Trainable parameter shapes, by PyTorch attribute name, for input shape x."""
        return {}

    def buffer_shapes(self, x: Shape) -> dict[str, Shape]:
        """Non-trainable buffer shapes (running statistics, counters) for input shape x."""
        return {}

    def macs(self, x: Shape, y: Shape) -> int:
        """Multiply-accumulates of one forward pass over the whole batch (0 for most layers)."""
        return 0

    def input_ids(self) -> int | None:
        """None for real-valued input; else the layer reads integer token ids in [0, bound) and this is the bound."""
        return None

    def frozen_rows(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Rows (along the first axis) of parameters whose gradient is zero by the layer's
        definition, whatever the loss (never trained): {param name: (rows, why)}. verify leaves them
        out of the numeric comparison and checks that their analytic gradient is exactly zero."""
        return {}

    def needed_ids(self) -> tuple[int, ...]:
        """Token ids (below input_ids()) that a random input of ids must contain for a check to
        exercise them (a padding id); () for most layers."""
        return ()

    def shared_params(self) -> dict[str, str]:
        """Parameters that are another layer's tensor (tied weights): {param name: owner layer's name}.

        They stay in param_shapes (the forward needs them) but are counted once, at their owner.
        """
        return {}

    def peer_costs(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        """This layer's cost as each peer tool counts it (see layers/peers.py); [] = no cost anywhere."""
        return []

    def backward_macs(self, x: Shape, y: Shape, input_grad: bool, convention: str) -> int:
        """MACs of the backward pass (input and weight gradients); input_grad False skips dL/dx."""
        return 0

    def weight_grad_macs(self, x: Shape, y: Shape, convention: str) -> int:
        """The part of backward_macs that computes parameter gradients (dL/dW): what freezing the layer saves."""
        return 0

    def training_forward_extra(self, x: Shape, y: Shape, convention: str) -> int:
        """MACs the convention sees in this layer's forward when autograd records it, beyond peer_costs.

        Non-zero where a framework runs a fused inference-only path the counter cannot see.
        """
        return 0

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        """Tensors autograd keeps for this layer's backward pass: by default its input (a linear's,
        a norm's, an activation's); flash: attention without its T×T matrices (FlashAttention)."""
        return [Saved(numel(x), x[-1] if x else 1)]

    def cache_shapes(self, x: Shape) -> dict[str, Shape]:
        """Tensors a token-by-token generation keeps for every past position (a decoder's keys and
        values), at the full sequence length of x; {} for layers that keep none."""
        return {}

    def python_steps(self, x: Shape) -> int:
        """Steps of Python the NumPy forward takes on input x, each a few small array operations (a
        recurrent layer's time steps, for each stacked layer and direction): verify's estimate of
        a check's time counts them, as array work does not show them. 1 by default."""
        return 1

    def work_elements(self, x: Shape) -> int:
        """Elements of the arrays the NumPy forward keeps for backward and the backward's largest
        temporaries, beyond the input and output (attention's T×T matrices per head, a recurrent
        layer's gates at every step): verify's memory estimate adds them. 0 by default."""
        return 0

    # -- NumPy reference, for verify: arrays are float64 (or float32), batch first --
    def init_params(self, x: Shape, rng: Any) -> dict[str, Any]:
        """Random parameters of the shapes param_shapes(x): fan-in scaled weights, small biases."""
        params = {}
        for name, shape in self.param_shapes(x).items():
            if len(shape) >= 2:  # a weight matrix or kernel: keep activations O(1) (unit variance per
                # input, uniform as PyTorch's default init, and drawn several times faster than normals)
                params[name] = unit_uniform(rng, numel(shape)).reshape(shape) * (1.0 / math.sqrt(numel(shape[1:])))
            elif name == "weight":  # a normalisation scale: around 1
                params[name] = 1.0 + 0.1 * rng.standard_normal(shape)
            else:
                params[name] = 0.1 * rng.standard_normal(shape)
        return params

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        """y and a cache for backward (leaves only)."""
        raise NotImplementedError(f"{self.type_name} has no NumPy forward")

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        """(dL/dx, {param name: dL/dparam}) from dL/dy and forward's cache (leaves only)."""
        raise NotImplementedError(f"{self.type_name} has no NumPy backward")

    def identities(self, x: Any, params: dict[str, Any], rng: Any) -> list[tuple[str, float, float]]:
        """Extra algebraic checks of this layer type: (what, error, tolerance) each."""
        return []

    def merge(self, outs: list[Any]) -> Any:
        """A block's output array from its child sequences' outputs."""
        raise NotImplementedError

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        """The gradient reaching each child sequence's output from the block's dL/dy."""
        raise NotImplementedError

    # -- block structure (leaves have none) --
    def sequences(self) -> list[tuple[str, list[Node]]]:
        """Child layer sequences by path segment, in execution order (empty for a leaf)."""
        return []

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        """A block's output shape from its input and each child sequence's output shape."""
        raise NotImplementedError

    # -- helpers for subclasses --
    def expect_rank(self, x: Shape, *ranks: int, layout: str = "") -> None:
        """Raise ShapeError unless len(x) is one of ranks."""
        if len(x) not in ranks:
            want = layout or " or ".join(f"{r}-D" for r in ranks)
            raise ShapeError(f"expects input {want}, got {fmt_shape(x)}", value=x)

    def expect_spatial(self, x: Shape, rank: int) -> None:
        """Raise ShapeError unless x is (N, C, *spatial) with `rank` spatial dims."""
        self.expect_rank(x, rank + 2, layout=LAYOUTS[rank])

    def expect_dim(self, x: Shape, dim: int, arg: str) -> int:
        """Normalise a PyTorch dim index (negative counts from the end) for shape x."""
        if not -len(x) <= dim < len(x):
            raise ShapeError(f"{arg} {dim} is out of range for {len(x)}-D input {fmt_shape(x)}", value=dim)
        return dim % len(x)

    def expect_size(self, arg: str, given: int | None, actual: int) -> None:
        """An explicit input size (in_channels, ...) must equal the size flowing in."""
        if given is not None and given != actual:
            raise ShapeError(f"{arg} {given} does not match the input's {actual}", value=given)


# how messages name an input of 1, 2 or 3 spatial dims
LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}

REGISTRY: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: add a layer type to the catalog under its lower-case type_name."""
    assert cls.type_name and cls.type_name == cls.type_name.lower(), cls
    assert cls.type_name not in REGISTRY, cls.type_name
    REGISTRY[cls.type_name] = cls
    return cls


def unit_uniform(rng: Any, n: int) -> Any:
    """n float64 numbers uniform on ±√3 (unit variance). A generator with a noise pool (verify's,
    `rng.unit`) hands out a read-only view of it; any other NumPy Generator draws them afresh."""
    unit = getattr(rng, "unit", None)
    return unit(n) if unit is not None else fresh_uniform(rng, n)


def fresh_uniform(rng: Any, n: int) -> Any:
    """n float64 numbers uniform on ±√3, a new writable array drawn from rng: as float32 (twice as
    fast, and 24 random bits are plenty here), widened, shifted in place."""
    u = rng.random(n, dtype="float32").astype("float64")
    u -= 0.5
    u *= 2 * math.sqrt(3.0)
    return u


def numel(shape: Sequence[int]) -> int:
    """Number of elements of a shape (1 for a scalar shape ())."""
    return math.prod(shape)


def fmt_shape(shape: Sequence[int | None]) -> str:
    """(1, 64, 56, 56) -> '1x64x56x56'."""
    return "x".join(str(s) for s in shape)
