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
- A block whose parameters alone exceed the budget (a decoder layer, its MLP, 32 of them) is checked
  as a smaller copy of the same structure: a repeat of more than two copies runs two (each feeds
  the next, which is what a repeat adds), then the largest integer argument of its layers (an
  MLP's hidden width, in every layer that has it) is halved until the copy fits. A halving the
  block's shapes refuse (a width a residual adds back) is passed over for the next argument.
  When no copy fits, the block is skipped and each layer and block inside it is checked.
"""

from __future__ import annotations

import copy as _copy
from typing import Any, Callable, Iterator

from ..analysis import Entry, Flow, analyse_node
from ..errors import ConfigError
from ..layers import numel
from ..layers.base import Layer, Node

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


def _leaves(layer: Layer, name: str) -> Iterator[tuple[Layer, str]]:
    """(leaf layer, its name) of every leaf in a layer's tree, the layer itself when a leaf."""
    if not layer.sequences():
        yield layer, name
        return
    for _, nodes in layer.sequences():
        for node in nodes:
            yield from _leaves(node.layer, node.name)


def _int_args(layer: Layer) -> dict[str, int]:
    args = layer.arguments()
    return {a: v for a, v in args.items() if isinstance(v, int) and not isinstance(v, bool) and v > 1}


def _with_arg(layer: Layer, name: str, old: int, new: int) -> Layer:
    """The layer's tree with every leaf's argument `name` that equals old set to new (the others shared)."""
    if not layer.sequences():
        args = layer.arguments()
        return type(layer)(**{**args, name: new}) if _int_args(layer).get(name) == old else layer

    def swap(value: Any) -> Any:
        if isinstance(value, Node):
            return value._replace(layer=_with_arg(value.layer, name, old, new))
        return [swap(v) for v in value]

    block = _copy.copy(layer)
    for arg in layer.args:
        if arg.nested:
            setattr(block, arg.name, swap(getattr(layer, arg.name)))
    return block


BLOCK_COPIES = 2  # a repeat's smaller copy: two copies, so one still feeds the next


def smaller_block(entry: Entry, fits: Fits) -> tuple[Entry, str] | None:
    """A block's copy (a repeat of BLOCK_COPIES, its layers' largest integer arguments halved) that
    fits, on a shorter input if need be, and what changed ('2 copies (of 32); out_features 896
    (of 14336) in gate_proj, up_proj'); None for a leaf or when no such copy fits."""
    if not entry.children:
        return None
    first = entry.children[0]
    layer, repeat = (first.layer, min(entry.copies, BLOCK_COPIES)) if entry.copies else (entry.layer, 0)
    if layer is None:
        return None
    x = tuple(entry.input_shape)

    def analysed(candidate: Layer) -> Entry | None:
        node = Node(layer=candidate, name=entry.name, repeat=max(repeat, 1))
        try:
            return analyse_node(node, x, entry.seg, Flow(tokens=entry.ids is not None))
        except (ConfigError, ValueError, TypeError, KeyError):
            return None

    current = analysed(layer)
    if current is None:
        return None
    changes = [f"{repeat} copies (of {entry.copies})"] if repeat and repeat < entry.copies else []
    halved: dict[tuple[str, int], tuple[int, list[str]]] = {}  # (argument, value now) -> (value at first, layers)
    while True:
        smaller = shorter_input(current, fits)
        if smaller is not None:
            changes += [f"{a} {v} (of {halved[a, v][0]}) in {', '.join(halved[a, v][1])}" for a, v in halved]
            return smaller, "; ".join(changes)
        counts: dict[tuple[str, int], list[str]] = {}
        for leaf, name in _leaves(layer, ""):
            for a, v in _int_args(leaf).items():
                counts.setdefault((a, v), []).append(name)
        for (a, v), names in sorted(counts.items(), key=lambda kv: -kv[0][1]):
            trial_layer = _with_arg(layer, a, v, v // 2)
            trial = analysed(trial_layer)
            if trial is not None and trial.params < current.params:
                first_value, _ = halved.pop((a, v), (v, names))
                halved[a, v // 2] = (first_value, sorted(set(names), key=names.index))
                layer, current = trial_layer, trial
                break
        else:
            return None


def shape_text(entry: Entry) -> str:
    """The entry's input shape as 1x64x4096."""
    return "x".join(map(str, entry.input_shape)) if numel(entry.input_shape) else "()"
