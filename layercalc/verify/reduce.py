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
  the next, which is what a repeat adds), then the largest integer argument value among its
  layers (an MLP's hidden width, in every layer that has it) is halved until the copy fits. A
  halving the block's shapes refuse (a width a residual adds back) is passed over for the next.
  When no copy fits, the block is skipped and each layer and block inside it is checked.
"""

from __future__ import annotations

import copy as _copy
from typing import Any, Callable, Iterator

from ..analysis import Entry, Flow, analyse_node
from ..errors import ConfigError
from ..layers import numel
from ..layers.base import Layer, Node
from .memory import held_params

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


def _halved(layer: Layer, old: int, names: frozenset[str] | None) -> Layer:
    """The layer's tree with every leaf's integer argument equal to old, of the given names (None:
    any name), halved; the leaves it leaves alone are shared. Raises ConfigError where a layer
    refuses the new value (an embedding's padding_idx outside a halved vocabulary)."""
    if not layer.sequences():
        hit = {a: v // 2 for a, v in _int_args(layer).items() if v == old and (names is None or a in names)}
        return type(layer)(**{**layer.arguments(), **hit}) if hit else layer

    def swap(value: Any) -> Any:
        if isinstance(value, Node):
            return value._replace(layer=_halved(value.layer, old, names))
        return [swap(v) for v in value]

    block = _copy.copy(layer)
    for arg in layer.args:
        if arg.nested:
            setattr(block, arg.name, swap(getattr(layer, arg.name)))
    return block


def _changes(before: Layer, after: Layer, name: str, leaf: bool) -> list[str]:
    """What a copy changed, by argument: 'out_features 896 (of 14336) in gate_proj, up_proj' (a
    leaf's own copy without the 'in')."""
    changed: dict[tuple[str, int, int], list[str]] = {}
    for (old, leaf_name), (new, _) in zip(_leaves(before, name), _leaves(after, name)):
        now = new.arguments()  # every value, 1 included (halved to 1, an argument leaves _int_args)
        for a, v in _int_args(old).items():
            if now.get(a, v) != v:
                changed.setdefault((a, now[a], v), []).append(leaf_name)
    return [f"{a} {new} (of {old})" + ("" if leaf else f" in {', '.join(names)}")
            for (a, new, old), names in changed.items()]


BLOCK_COPIES = 2  # a repeat's smaller copy: two copies, so one still feeds the next


def smaller_copy(entry: Entry, fits: Fits) -> tuple[Entry, str] | None:
    """A copy of the entry's layer or block that fits, on a shorter input if need be, and what
    changed ('2 copies (of 32); out_features 896 (of 14336) in gate_proj, up_proj'); None when no
    copy fits. A repeat runs BLOCK_COPIES copies; then, round by round, the largest integer
    argument value among its layers is halved: in every argument that has that value, or else in
    the arguments of one name (a linear's explicit in_features goes down with the out_features
    before it), whichever the shapes accept and leaves fewer parameters."""
    layer = entry.children[0].layer if entry.copies else entry.layer
    if layer is None:
        return None
    repeat = min(entry.copies, BLOCK_COPIES) if entry.copies else 1
    x, name = tuple(entry.input_shape), entry.children[0].name if entry.copies else entry.name

    def analysed(candidate: Layer) -> Entry | None:
        if not entry.children:
            return reanalysed(entry, x, candidate)
        node = Node(layer=candidate, name=entry.name, repeat=repeat)
        try:
            return analyse_node(node, x, entry.seg, Flow(tokens=entry.ids is not None))
        except (ConfigError, ValueError, TypeError, KeyError):
            return None

    original, current = layer, analysed(layer)
    if current is None:
        return None
    copies = [f"{repeat} copies (of {entry.copies})"] if entry.copies > repeat else []
    while True:
        if copies or layer is not original:  # something changed: does it fit now?
            smaller = shorter_input(current, fits)
            if smaller is not None:
                return smaller, "; ".join(copies + _changes(original, layer, name, not entry.children))
        for trial_layer in _halvings(layer, name):
            trial = analysed(trial_layer)
            # fewer arrays held (a tied head's weight counts here, not in its params)
            if trial is not None and held_params(trial) < held_params(current):
                layer, current = trial_layer, trial
                break
        else:
            return None


def _halvings(layer: Layer, name: str) -> Iterator[Layer]:
    """The layer's tree with one integer value halved, largest value first: in every argument
    with that value, then (when several names have it) in each name alone; a halving the layer
    refuses is left out."""
    values: dict[int, set[str]] = {}
    for leaf, _ in _leaves(layer, name):
        for a, v in _int_args(leaf).items():
            values.setdefault(v, set()).add(a)
    for v in sorted(values, reverse=True):
        names = sorted(values[v])
        for group in [None, *(frozenset([n]) for n in names)] if len(names) > 1 else [None]:
            try:
                yield _halved(layer, v, group)
            except ConfigError:
                continue


def shape_text(entry: Entry) -> str:
    """The entry's input shape as 1x64x4096."""
    return "x".join(map(str, entry.input_shape)) if numel(entry.input_shape) else "()"
