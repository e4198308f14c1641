"""Checks above the memory budget at their own size, made to fit without changing what is checked.

- First the same layer or block (same type, same arguments, same parameter shapes) on a shorter
  input: the dimensions after the batch that no parameter depends on (a sequence's length, an
  image's height and width) are halved until the check fits. A layer computes the same function
  of each position at any length, so this is still a check of that layer with those arguments.
- A layer whose parameters alone exceed the budget (a 128,256-word embedding, the output head of
  a language model) cannot be held in float64 at all: it is checked as a smaller copy of its type,
  its largest integer argument (the vocabulary, the output features) halved until it fits, the
  others unchanged. The row says which argument changed and from what: it is a real check of
  that layer type's code, not of that exact size.
A block whose parameters alone exceed the budget has no smaller copy (its arguments are layers):
it is skipped, and each layer and block inside it is checked.
"""

from __future__ import annotations

from typing import Any, Callable

from ..analysis import Entry, Flow, analyse_node
from ..errors import ConfigError
from ..layers import numel
from ..layers.base import Node

Fits = Callable[[Entry], bool]


def reanalysed(entry: Entry, x: tuple[int, ...], layer: Any = None) -> Entry | None:
    """The entry analysed again for input x (and, when given, another layer of its type); None
    when the layer refuses that input or the entry cannot be analysed on its own."""
    if entry.copies:  # a repeat group: its copies' node, repeated
        first = entry.children[0]
        node = Node(layer=first.layer, name=first.name, repeat=entry.copies)
    elif entry.layer is None:
        return None
    else:
        node = Node(layer=layer or entry.layer, name=entry.name)
    flow = Flow(tokens=entry.ids is not None)
    try:
        if not entry.children and node.layer.shared_params():  # a tied weight: its owner as the analysis saw it
            shapes = node.layer.param_shapes(x)
            for pname, owner in node.layer.shared_params().items():
                flow.owned.setdefault(owner, (repr(owner), {}, node.trainable))[1][pname] = shapes[pname]
        return analyse_node(node, x, entry.seg, flow)
    except (ConfigError, ValueError, TypeError, KeyError):
        return None


def param_shapes(entry: Entry) -> tuple[Any, ...]:
    """Every parameter shape in the subtree, tied ones included, in order: what makes two inputs
    run the same layers."""
    if not entry.children:
        if entry.layer is None:
            return ()
        return tuple(sorted(entry.layer.param_shapes(tuple(entry.input_shape)).items()))
    return tuple(param_shapes(c) for c in entry.children)


REDUCED_MACS = 2 * 10**9  # a check made smaller for memory is also made small enough to run in seconds


def shorter_input(entry: Entry, fits: Fits, macs: int = REDUCED_MACS) -> Entry | None:
    """The entry on the largest input (halving, longest dimension first) that fits, with the same
    parameter count, and whose forward takes at most `macs` where the input can be cut that far;
    None if no such input fits."""
    shape = list(entry.input_shape)
    current = entry
    same = param_shapes(entry)
    while not (fits(current) and current.macs <= macs):
        for d in sorted(range(1, len(shape)), key=lambda d: -shape[d]):
            if shape[d] <= 1:
                continue
            trial = [*shape[:d], shape[d] // 2, *shape[d + 1:]]
            smaller = reanalysed(entry, tuple(trial))
            if smaller is not None and param_shapes(smaller) == same:
                shape, current = trial, smaller
                break
        else:
            return current if fits(current) else None
    return current


def smaller_copy(entry: Entry, fits: Fits) -> tuple[Entry, str] | None:
    """A leaf's copy with its largest integer argument halved until the check fits (on a shorter
    input if need be), and what changed ('out_features 8016 (of 128256)'); None for a block or
    when no such copy fits."""
    layer = entry.layer
    if layer is None or entry.children or entry.copies:
        return None
    args = layer.arguments()
    ints = [a for a, v in args.items() if isinstance(v, int) and not isinstance(v, bool) and v > 1]
    if not ints:
        return None
    name = max(ints, key=lambda a: args[a])
    value = args[name]
    while value > 1:
        value //= 2
        copy = type(layer)(**{**args, name: value})
        smaller = reanalysed(entry, tuple(entry.input_shape), copy)
        if smaller is None or smaller.params >= entry.params:
            return None
        smaller = shorter_input(smaller, fits)
        if smaller is not None:
            return smaller, f"{name} {value} (of {args[name]})"
    return None


def shape_text(entry: Entry) -> str:
    """The entry's input shape as 1x64x4096."""
    return "x".join(map(str, entry.input_shape)) if numel(entry.input_shape) else "()"
