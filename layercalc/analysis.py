"""The calculator: a Network -> per-layer rows (shapes, params, buffers, MACs) and exact totals.

Pure integer arithmetic on shapes; no arrays. Blocks get their numbers from their children.
A `repeat: N` entry is analysed copy by copy only until its output shape equals its input shape
(then every later copy is identical), so `repeat: 1000000000` costs nothing.

Two things flow along with the shapes (see Flow): whether the value is still the network's
integer token ids (only layers whose `input_ids()` is set may read them, and they nothing else),
and the parameters of every layer seen so far, so that a tied parameter (`shared_params()`) is
checked against its owner's and counted once, at the owner.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .config import Network
from .errors import ConfigError, ShapeError
from .layers import Layer, Node, Shape, fmt_shape, numel

MAX_DISTINCT_COPIES = 10_000  # a repeat whose shape is still changing after this many copies is refused
REPEAT_TYPE = "repeat"  # the type shown on the row that groups a repeated entry's copies


class Entry:
    """One analysed layer or block; a block's numbers are the sums over its children."""

    __slots__ = ("seg", "name", "type", "input_shape", "output_shape", "params", "buffers", "macs",
                 "tensors", "children", "copies", "layer", "ids")

    def __init__(
        self, seg: str, name: str, type: str, input_shape: Shape, output_shape: Shape, params: int = 0,
        buffers: int = 0, macs: int = 0, tensors: int = 0, children: list["Entry"] | None = None,
        copies: int = 0, layer: Layer | None = None, ids: int | None = None,
    ) -> None:
        self.seg = seg  # path segment below the parent: "conv1", "body.0", "branches.1.0"
        self.name, self.type = name, type
        self.input_shape, self.output_shape = input_shape, output_shape
        self.params, self.buffers, self.macs = params, buffers, macs
        self.tensors = tensors  # elements of every tensor created inside, for activation memory
        self.children = children if children is not None else []
        self.copies = copies  # repeat groups only: how many copies; the last child stands for the rest
        self.layer = layer  # the layer (None for a repeat group), for verify
        self.ids = ids  # the input is integer token ids in [0, ids) (None: real values), for verify


class Flow:
    """What an analysis carries from layer to layer besides the shape."""

    def __init__(self, tokens: bool = False) -> None:
        self.tokens = tokens  # the value flowing in is still the network's integer token ids
        self.owned: dict[str, tuple[str, dict[str, Shape]]] = {}  # name -> (label, own param shapes)

    def check_tied(self, pname: str, owner: str, shape: Shape) -> None:
        """A tied parameter must be an earlier layer's own parameter of the same name and shape."""
        if owner not in self.owned:
            raise ShapeError(f"{pname} tied to {owner!r}, but no earlier layer is named {owner!r}", value=owner)
        label, shapes = self.owned[owner]
        if pname not in shapes:
            raise ShapeError(f"{pname} tied to {owner!r}, but {label} has no {pname} of its own", value=owner)
        if shapes[pname] != shape:
            raise ShapeError(
                f"{pname} tied to {owner!r}, but {label}'s {pname} is {fmt_shape(shapes[pname])}"
                f" and this {pname} is {fmt_shape(shape)}",
                value=owner,
            )


def _first_leaf(nodes: list[Node]) -> Layer | None:
    """The layer that runs first in a sequence of entries (None if there is none)."""
    for node in nodes:
        sequences = node.layer.sequences()
        if not sequences:
            return node.layer
        for _, seq in sequences:
            leaf = _first_leaf(seq)
            if leaf is not None:
                return leaf
    return None


def _leaf(node: Node, seg: str, x: Shape, flow: Flow) -> Entry:
    layer = node.layer
    ids = layer.input_ids()
    if ids is not None and not flow.tokens:
        raise ShapeError(
            f"reads integer token ids, so it must be the network's first layer; its input here is {fmt_shape(x)}"
            " real values",
            value=x,
        )
    if ids is None and flow.tokens:
        raise ShapeError("takes real values, but its input here is the network's integer token ids", value=x)
    y = layer.output_shape(x)
    shapes = layer.param_shapes(x)
    shared = layer.shared_params()
    for pname, owner in shared.items():
        flow.check_tied(pname, owner, shapes[pname])
    own = {k: v for k, v in shapes.items() if k not in shared}  # a tied tensor counts at its owner
    flow.owned[node.name] = (node.label, own)
    flow.tokens = False
    return Entry(
        seg=seg,
        name=node.name,
        type=layer.type_name,
        input_shape=x,
        output_shape=y,
        params=sum(numel(s) for s in own.values()),
        buffers=sum(numel(s) for s in layer.buffer_shapes(x).values()),
        macs=layer.macs(x, y),
        tensors=numel(y),
        layer=layer,
        ids=ids,
    )


def _block(node: Node, seg: str, x: Shape, flow: Flow) -> Entry:
    layer = node.layer
    children: list[Entry] = []
    outs: list[Shape] = []
    tokens, still_tokens, firsts = flow.tokens, [], []
    for prefix, seq in layer.sequences():
        flow.tokens = tokens  # every child sequence starts from the block's input
        out, entries = analyse_sequence(seq, x, prefix, flow=flow)
        outs.append(out)
        still_tokens.append(flow.tokens)
        firsts += entries[:1]
        children.extend(entries)
    flow.tokens = all(still_tokens)
    y = layer.combine(x, outs)
    # ids drawn for the block's input must suit every child that reads them
    bounds = [e.ids for e in firsts if e.ids is not None]
    entry = Entry(
        seg=seg, name=node.name, type=layer.type_name, input_shape=x, output_shape=y, children=children, layer=layer,
        ids=min(bounds) if tokens and bounds else None,
    )
    _sum_children(entry, extra_tensor=numel(y) if layer.creates_tensor else 0)
    return entry


def _sum_children(entry: Entry, extra_tensor: int = 0, last_weight: int = 1) -> None:
    """Fill a block's numbers from its children (the last child counted last_weight times)."""
    kids = entry.children
    weights = [1] * (len(kids) - 1) + [last_weight] if kids else []
    entry.params = sum(w * c.params for w, c in zip(weights, kids))
    entry.buffers = sum(w * c.buffers for w, c in zip(weights, kids))
    entry.macs = sum(w * c.macs for w, c in zip(weights, kids))
    entry.tensors = sum(w * c.tensors for w, c in zip(weights, kids)) + extra_tensor


def analyse_node(node: Node, x: Shape, seg: str, flow: Flow | None = None) -> Entry:
    """Analyse one entry (with its repeat) for input shape x; errors get the entry's location."""
    flow = flow if flow is not None else Flow()
    try:
        if node.repeat == 1:
            return (_block if node.layer.sequences() else _leaf)(node, seg, x, flow)
        return _repeat(node, x, seg, flow)
    except ShapeError as exc:
        raise exc.at(line=node.loc.line, where=node.loc.where, layer=node.loc.layer) from None


def _repeat(node: Node, x: Shape, seg: str, flow: Flow) -> Entry:
    one = Node(layer=node.layer, name=node.name, loc=node.loc, named=node.named)
    copies: list[Entry] = []
    shape = x
    while len(copies) < node.repeat:
        copy = analyse_node(one, shape, str(len(copies)), flow)
        copies.append(copy)
        if copy.output_shape == shape:  # a fixed point: every later copy is this one again
            break
        if len(copies) >= MAX_DISTINCT_COPIES:
            raise ShapeError(f"repeat {node.repeat}: the shape still changes after {MAX_DISTINCT_COPIES:,} copies")
        shape = copy.output_shape
    entry = Entry(
        seg=seg,
        name=node.name,
        type=REPEAT_TYPE,
        input_shape=x,
        output_shape=copies[-1].output_shape,
        children=copies,
        copies=node.repeat,
        ids=copies[0].ids,
    )
    _sum_children(entry, last_weight=node.repeat - len(copies) + 1)
    return entry


def analyse_sequence(
    nodes: list[Node], x: Shape, prefix: str = "", top: bool = False, flow: Flow | None = None
) -> tuple[Shape, list[Entry]]:
    """Run shapes through a list of entries; return the output shape and their entries."""
    flow = flow if flow is not None else Flow()
    entries = []
    for i, node in enumerate(nodes):
        # Top-level entries are addressed by name (given or default); nested ones by index
        # unless the user named them, as PyTorch addresses nn.Sequential children.
        own = node.name if top or node.named else str(i)
        entry = analyse_node(node, x, f"{prefix}.{own}" if prefix else own, flow)
        entries.append(entry)
        x = entry.output_shape
    return x, entries


class Report:
    """The analysed network: rows for every layer at every depth, and exact totals."""

    def __init__(self, network: Network, entries: list[Entry]) -> None:
        self.network = network
        self.entries = entries
        self.dtype_bytes = network.dtype_bytes

    @property
    def total(self) -> dict[str, int]:
        """Totals over the whole network (blocks' numbers are not counted twice)."""
        params = sum(e.params for e in self.entries)
        macs = sum(e.macs for e in self.entries)
        return {
            "params": params,
            "buffers": sum(e.buffers for e in self.entries),
            "macs": macs,
            "flops": 2 * macs,
            "activation_bytes": sum(e.tensors for e in self.entries) * self.dtype_bytes,
            "param_bytes": params * self.dtype_bytes,
        }

    @property
    def output_shape(self) -> Shape:
        """The network's output shape (batch first)."""
        return self.entries[-1].output_shape if self.entries else self.network.input_shape

    def rows(self, depth: int | None = None, macs: Callable[[Entry], int | None] | None = None) -> Iterator[dict[str, Any]]:
        """One plain dict per row, in execution order; blocks below `depth` folded into one row.

        `macs` replaces the MAC count of each row (a peer convention's; None = not counted).
        """
        for entry in self.entries:
            yield from self._rows(entry, "", entry.name, 0, depth, macs)

    def _rows(
        self, e: Entry, parent: str, name: str, level: int, depth: int | None,
        macs: Callable[[Entry], int | None] | None, seg: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        seg = e.seg if seg is None else seg
        path = f"{parent}.{seg}" if parent else seg
        count = e.macs if macs is None else macs(e)
        yield {
            "path": path,
            "name": name,
            "type": e.type,
            "depth": level,
            "input_shape": list(e.input_shape),
            "output_shape": list(e.output_shape),
            "params": e.params,
            "buffers": e.buffers,
            "macs": count,
            "flops": None if count is None else 2 * count,
            "activation_bytes": numel(e.output_shape) * self.dtype_bytes,
        }
        if depth is not None and level >= depth:
            return
        if e.copies:  # a repeat group: copy k is child min(k, last), renamed name.k
            last = len(e.children) - 1
            for k in range(e.copies):
                yield from self._rows(e.children[min(k, last)], path, f"{name}.{k}", level + 1, depth, macs, str(k))
            return
        for child in e.children:
            yield from self._rows(child, path, child.name, level + 1, depth, macs)

    def to_dict(self, depth: int | None = None, macs: Callable[[Entry], int | None] | None = None) -> dict[str, Any]:
        """The SPEC's JSON object: name, input, batch, dtype, layers, total."""
        net = self.network
        return {
            "name": net.name,
            "input": list(net.input),
            "batch": net.batch,
            "dtype": net.dtype,
            "layers": list(self.rows(depth, macs)),
            "total": self.total,
        }


def analyse(network: Network) -> Report:
    """Analyse a loaded network; raises ConfigError (with location) when a shape does not fit."""
    try:
        # a network whose first layer reads token ids takes integer ids as its input
        first = _first_leaf(network.nodes)
        flow = Flow(tokens=first is not None and first.input_ids() is not None)
        _, entries = analyse_sequence(network.nodes, network.input_shape, top=True, flow=flow)
    except ConfigError as exc:
        raise exc.at(file=network.file) from None
    return Report(network, entries)
