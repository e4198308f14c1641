"""The cost side of a layer type: what the calculator, the catalog and the peer conventions read.

Its documentation (summary, rules in words, example), argument schema, output shape, parameter and
buffer shapes, forward MACs, and facts for the counting conventions (each peer tool's count, the
fused kernel it runs as, its backward as parts; layers/counting.py decides what each convention
makes of them). Pure integer arithmetic: nothing here imports NumPy or knows how verify runs. A
new type overrides only what differs from these defaults (an elementwise layer without parameters
overrides almost nothing).
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, final

from ..errors import ShapeError
from .counting import CostRow, Grad, grad_macs, recording_extra, seen
from .schema import LAYOUTS, Arg, Shape, brief_arg, equals_default, fmt_shape, numel

if TYPE_CHECKING:  # a block's children are tree nodes, which hold whole layers
    from .base import Node


class Saved(NamedTuple):
    """A tensor autograd keeps for a layer's backward pass, for one forward of the batch.

    width: its last dim, which says how tensor parallelism treats it: a tensor as wide as the
    model (the residual stream) is replicated on every device unless the sequence is split too;
    0 marks a tensor inside attention's heads, always split.
    """

    elements: int
    width: int
    mask: bool = False  # a dropout mask: one byte an element, whatever the dtype
    # which tensor it is: "x" the layer's input, "y" its output (tensors a neighbour may keep too,
    # which autograd stores once), "" one of the layer's own
    tensor: str = ""


class CostModel:
    """Shape and cost rules of a layer type, with the defaults of a parameter-free, cost-free layer."""

    type_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for the catalog
    args: ClassVar[tuple[Arg, ...]] = ()
    # the dim whose size the layer maps from input to output (channels, features): the arguments
    # column shows it as 64→128, and then leaves out the arguments that state those sizes
    feature_dim: ClassVar[int | None] = None
    feature_args: ClassVar[tuple[str, ...]] = ()
    creates_tensor: ClassVar[bool] = True  # False for pure groupings (their output is a child's)
    # its backward reads its input only for its weights' gradient (a matmul's dL/dx needs the weight
    # alone): frozen, it keeps nothing
    input_for_weights: ClassVar[bool] = False
    # a block whose merge's backward needs its sequences' outputs (a product's factors; an empty
    # branch's is the block's input), which autograd then keeps; an add's or a join's needs no values
    keeps_outputs: ClassVar[bool] = False

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
            if value is None or (not arg.required and equals_default(value, arg.default)):
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

    def adapter_params(self, x: Shape) -> int:
        """Parameters that train even when the layer's own are frozen (LoRA adapters): 0 unless adapted."""
        return 0

    def input_ids(self) -> int | None:
        """None for real-valued input; else the layer reads integer token ids in [0, bound) and this is the bound."""
        return None

    def shared_params(self) -> dict[str, str]:
        """Parameters that are another layer's tensor (tied weights): {param name: owner layer's name}.

        They stay in param_shapes (the forward needs them) but are counted once, at their owner.
        """
        return {}

    def reads(self) -> tuple[str, ...]:
        """Names of the streams this layer reads besides its input (a named input or an earlier
        top-level entry's output: cross-attention's keys and values); () for most layers."""
        return ()

    def reading(self, streams: dict[str, Shape]) -> "CostModel":
        """A copy of this layer that knows the shapes (batch first) of the streams reads() names;
        the calculator hands them over before asking for any shape or cost."""
        return self

    def offers(self) -> dict[str, Any]:
        """What this layer's own parameters provide to later layers of the same top-level entry
        ({kind: its settings}: T5's relative position bias table); {} for most layers."""
        return {}

    def sharing(self, offered: dict[str, tuple[str, Any]]) -> "CostModel":
        """This layer, or a copy that reads what an earlier layer of its top-level entry offers
        ({kind: (owner's name, settings)}), as a tied parameter of that owner."""
        return self

    def cache_shapes(self, x: Shape) -> dict[str, Shape]:
        """Tensors a token-by-token generation keeps for every past position (a decoder's keys and
        values), at the full sequence length of x; {} for layers that keep none."""
        return {}

    def core_macs(self, x: Shape) -> int:
        """MACs of the part whose activations are T×T matrices (attention's q·kᵀ and A·v), which
        selective recompute runs again: a composite's parts' own, 0 for a layer without one."""
        return sum(part.core_macs(shape) for part, shape in self.peer_parts(x))

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        """Tensors autograd keeps for this layer's backward pass (training memory): by default its
        input (a linear's, a norm's, an activation's); flash: attention without its T×T matrices."""
        return [Saved(numel(x), x[-1] if x else 1, tensor="x")]

    # -- how the peer tools count it: facts only; layers/counting.py decides per convention --
    def peer_counts(self, x: Shape, y: Shape) -> list[CostRow]:
        """Each peer tool's count of this layer run as separate ops, as rows of layers/peers.py;
        [] = no cost anywhere. A fused kernel's effect is `fused_kernel`'s, not written here."""
        return []

    def peer_parts(self, x: Shape) -> "list[tuple[CostModel, Shape]]":
        """Catalog layers (with their input shapes) this layer is built of, whose peer rows are its
        own too: [] but for a composite layer."""
        return []

    def fused_kernel(self) -> str | None:
        """The fused kernel (a name in layers/counting.py) this layer runs as, if any; None when
        it runs as the separate ops its peer_counts and backward_parts describe."""
        return None

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        """The backward pass as parts (dL/dW and dL/dx products, what computes them); input_grad
        False leaves out the dL/dx this layer's input does not need. [] = no backward MACs."""
        return []

    # what the calculator calls, derived from the facts above (which a type overrides instead)
    @final
    def peer_costs(self, x: Shape, y: Shape, recording: bool = False) -> list[CostRow]:
        """This layer's cost as each peer tool counts it at inference, or with autograd `recording`."""
        rows = self.peer_counts(x, y)
        for layer, shape in self.peer_parts(x):
            rows = rows + layer.peer_costs(shape, layer.output_shape(shape), recording)
        return seen(rows, self.fused_kernel(), recording)

    @final
    def backward_macs(self, x: Shape, y: Shape, input_grad: bool, convention: str) -> int:
        """MACs of the backward pass (input and weight gradients); input_grad False skips dL/dx."""
        return grad_macs(self.backward_parts(x, y, input_grad), convention)

    @final
    def weight_grad_macs(self, x: Shape, y: Shape, convention: str) -> int:
        """The part of backward_macs that computes parameter gradients (dL/dW): what freezing the layer saves."""
        return grad_macs(self.backward_parts(x, y, True), convention, weights_only=True)

    @final
    def training_forward_extra(self, x: Shape, y: Shape, convention: str) -> int:
        """MACs the convention sees in this layer's forward when autograd records it, beyond peer_costs.

        Non-zero where a framework runs a fused inference-only path the counter cannot see.
        """
        return recording_extra(self.peer_costs(x, y), self.peer_costs(x, y, recording=True), convention)

    # -- block structure (leaves have none) --
    def sequences(self) -> "list[tuple[str, list[Node]]]":
        """Child layer sequences by path segment, in execution order (empty for a leaf)."""
        return []

    def combine(self, x: Shape, outs: list[Shape]) -> Shape:
        """A block's output shape from its input and each child sequence's output shape."""
        raise NotImplementedError

    def inner_shape(self, x: Shape) -> Shape:
        """The shape a block's child sequences read: its input x, or x reshaped (a mixture of
        experts routes tokens, so its router and experts see (N·T, E))."""
        return x

    def multiples(self) -> list[tuple[int, int]]:
        """For each child sequence: (parameter sets the block holds, times it runs over the block's
        input). (1, 1) each but where a block holds more than it runs: every expert is held, top_k
        run on each token (counted as top_k runs over all the tokens)."""
        return [(1, 1)] * len(self.sequences())

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
