"""The calculator: a Network -> per-layer rows (shapes, params, buffers, MACs) and exact totals.

Pure integer arithmetic on shapes; no arrays. Blocks get their numbers from their children.
A `repeat: N` entry is analysed copy by copy only until its output shape equals its input shape
(then every later copy is identical), so `repeat: 1000000000` costs nothing.

Two things flow along with the shapes (see Flow): whether the value is still the network's
integer token ids (only layers whose `input_ids()` is set may read them, and they nothing else),
and the parameters of every layer seen so far, so that a tied parameter (`shared_params()`) is
checked against its owner's and counted once, at the owner.

An entry with `trainable: false` (or inside such a block) has frozen parameters: they count in
`params` but not in `trainable_params`, and a value needs a gradient only downstream of a
trainable parameter (`Run.grad`), as autograd's requires_grad propagates.

The run table (`Report.run_table`, `Execution` rows) is the one walk over the analysed tree: every
place an entry runs, how many times in all and whether its input needs a gradient. The totals, each
convention's counts, the training cost, the by-type rows, the report's rows and verify's memory
estimates are folds over it. This module imports config, errors, layers and lora (the adapters' target check) only.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterable, Iterator, NamedTuple, Sequence

from . import lora
from .config import Network, check_source
from .errors import ConfigError, ShapeError
from .layers import Layer, Node, Shape, fmt_shape, numel

MAX_DISTINCT_COPIES = 10_000  # a repeat whose shape is still changing after this many copies is refused
REPEAT_TYPE = "repeat"  # the type shown on the row that groups a repeated entry's copies
LISTED_COPIES = 100  # a repeat of more copies lists its distinct copies, then one row for the rest
TOKEN_ID_BYTES = 8  # token ids are int64, as torch.long holds them (whatever the config's dtype)


class Entry:
    """One analysed layer or block; a block's numbers are the sums over its children.

    `sequences` holds a block's children per child sequence (as layer.sequences() lists them); a
    repeat group has one sequence, its distinct copies, and `copies` says how many copies run: the
    last distinct copy stands for every later one (they are equal, input shape included).
    """

    __slots__ = ("seg", "name", "type", "input_shape", "output_shape", "params", "buffers", "macs",
                 "tensors", "cache", "sequences", "copies", "layer", "ids", "trainable", "trainable_params",
                 "table", "source", "reads", "multiples")

    def __init__(
        self, seg: str, name: str, type: str, input_shape: Shape, output_shape: Shape, params: int = 0,
        buffers: int = 0, macs: int = 0, tensors: int = 0, children: list["Entry"] | None = None,
        copies: int = 0, layer: Layer | None = None, sequences: list[list["Entry"]] | None = None,
        ids: int | None = None, cache: int = 0, trainable: bool = True, trainable_params: int | None = None,
    ) -> None:
        self.seg = seg  # path segment below the parent: "conv1", "body.0", "branches.1.0"
        self.name, self.type = name, type
        self.input_shape, self.output_shape = input_shape, output_shape
        self.params, self.buffers, self.macs = params, buffers, macs
        self.tensors = tensors  # elements of every tensor created inside, for activation memory
        self.cache = cache  # elements a generation keeps for every past position (a decoder's KV cache)
        # `children` is one sequence (a repeat's distinct copies, or a made-up root)
        self.sequences = sequences if sequences is not None else ([children] if children else [])
        self.copies = copies  # repeat groups only: how many copies run
        self.layer = layer  # the layer (None for a repeat group), for verify
        self.ids = ids  # the input is integer token ids in [0, ids) (None: real values), for verify
        self.trainable = trainable  # False: frozen by its own `trainable: false` or an enclosing block's
        # params that get a gradient: all of them when trainable, none when frozen (a block: its children's sum)
        self.trainable_params = (params if trainable else 0) if trainable_params is None else trainable_params
        self.table: tuple["Execution", ...] | None = None  # entry_table(self), once it is asked for
        self.source: str | None = None  # a top-level entry's `from:`, the named input or entry it reads
        # the other streams read inside (cross-attention's keys and values): {name: shape, batch first}
        self.reads: dict[str, Shape] = {}
        # a block's (parameter sets, runs) of each child sequence, as its layer declares them
        self.multiples = layer.multiples() if layer is not None and self.sequences else []

    @property
    def children(self) -> list["Entry"]:
        """Every child entry, sequence after sequence (a repeat group: its distinct copies)."""
        return [child for seq in self.sequences for child in seq]

    def timed(self) -> list[list[tuple["Entry", int]]]:
        """Each child sequence as (child, how many times it runs in a row); a repeat group's last
        distinct copy runs for itself and every identical copy after it."""
        return [[(c, runs) for c, runs, _ in seq] for seq in self.counted()]

    def held(self) -> list[list[tuple["Entry", int]]]:
        """Each child sequence as (child, how many parameter sets of it there are): as timed(), but
        a block may hold more copies of a child than it runs (every expert, of which top_k run)."""
        return [[(c, held) for c, _, held in seq] for seq in self.counted()]

    def counted(self) -> list[list[tuple["Entry", int, int]]]:
        """Each child sequence as (child, runs in a row, parameter sets)."""
        if self.copies:
            distinct = self.sequences[0]
            rest = self.copies - len(distinct) + 1  # how often the last distinct copy runs
            return [[(c, n, n) for i, c in enumerate(distinct) for n in [rest if i == len(distinct) - 1 else 1]]]
        multiples = self.multiples or [(1, 1)] * len(self.sequences)
        return [[(c, runs, held) for c in seq] for seq, (held, runs) in zip(self.sequences, multiples)]

    def runs(self, grad: bool = False) -> "Iterator[list[Run]]":
        """Each child sequence as the runs of its children, for an input that needs a gradient if grad."""
        for seq in self.counted():
            yield _chain(seq, grad)


class Run(NamedTuple):
    """One child of an entry as it runs: how many times in a row, and whether its first input needs dL/dx.

    Only the last distinct copy of a repeat runs more than once; its later runs' input needs a
    gradient when the first run's did or when the copy itself has trainable parameters. `held` is
    how many parameter sets it stands for: `times` but below a block that keeps more of a child
    than it runs (a mixture of experts holds every expert and runs top_k of them per token).
    """

    entry: Entry
    times: int
    grad: bool  # the first run's input depends on a parameter (so the backward computes dL/dx)
    held: int

    @property
    def later_grad(self) -> bool:
        """Whether the input of the second and later runs needs a gradient."""
        return self.grad or self.entry.trainable_params > 0


def _chain(children: list[tuple[Entry, int, int]], grad: bool) -> list[Run]:
    """Runs of entries applied one after another: after an entry with trainable parameters, inputs need gradients."""
    runs = []
    for child, times, held in children:
        runs.append(Run(child, times, grad, held))
        grad = grad or child.trainable_params > 0
    return runs


class Flow:
    """What an analysis carries from layer to layer besides the shape."""

    def __init__(self, tokens: bool = False) -> None:
        self.tokens = tokens  # the value flowing in is still the network's integer token ids
        # what a layer may read besides its input: named inputs and earlier top-level entries'
        # outputs, name -> (shape, batch first; whether it is token ids)
        self.streams: dict[str, tuple[Shape, bool]] = {}
        # what earlier layers of this top-level entry offer later ones: kind -> (owner's name, settings)
        self.offered: dict[str, tuple[str, Any]] = {}
        # the offering layers' own parameters as they were offered: later layers of the same name
        # (a repeated block's copies) must not stand in for the owner
        self.lent: dict[str, tuple[str, dict[str, Shape], bool]] = {}
        # name -> (label, own param shapes, trainable)
        self.owned: dict[str, tuple[str, dict[str, Shape], bool]] = {}
        self.blocks: dict[str, str] = {}  # name -> label of each block entered so far

    def stream(self, name: str, reader: str) -> Shape:
        """The shape of the stream a layer reads besides its input; ShapeError if there is none such."""
        if name not in self.streams:
            known = ", ".join(self.streams) or "none"
            raise ShapeError(f"{reader} {name!r} names no input and no earlier top-level entry (there are: {known})",
                             value=name)
        shape, ids = self.streams[name]
        if ids:
            raise ShapeError(f"{reader} {name!r} is token ids; it needs real values (N, S, E), as an entry's output",
                             value=name)
        return shape

    def check_tied(self, pname: str, owner: str, shape: Shape, trainable: bool = True) -> None:
        """A tied parameter must be an earlier layer's own parameter of the same name, shape and trainability."""
        if pname in self.lent.get(owner, ("", {}, True))[1]:
            label, shapes, owner_trainable = self.lent[owner]
            self._same(pname, owner, shape, trainable, label, shapes, owner_trainable)
            return
        if owner not in self.owned:
            if owner in self.blocks:  # a block holds its layers' tensors, none of its own
                raise ShapeError(f"{pname} tied to {owner!r}, but {self.blocks[owner]} is a block, not a layer:"
                                 f" tie to the layer inside it that owns the {pname}", value=owner)
            raise ShapeError(f"{pname} tied to {owner!r}, but no earlier layer is named {owner!r}", value=owner)
        label, shapes, owner_trainable = self.owned[owner]
        self._same(pname, owner, shape, trainable, label, shapes, owner_trainable)

    @staticmethod
    def _same(pname: str, owner: str, shape: Shape, trainable: bool, label: str, shapes: dict[str, Shape],
              owner_trainable: bool) -> None:
        """The owner's parameter (label, its own shapes, trainable) must match the tied one's."""
        if pname not in shapes:
            raise ShapeError(f"{pname} tied to {owner!r}, but {label} has no {pname} of its own", value=owner)
        if shapes[pname] != shape:
            raise ShapeError(
                f"{pname} tied to {owner!r}, but {label}'s {pname} is {fmt_shape(shapes[pname])}"
                f" and this {pname} is {fmt_shape(shape)}",
                value=owner,
            )
        if owner_trainable != trainable:
            # one tensor has one requires_grad: freezing either user freezes both
            state = ("trainable", "frozen") if owner_trainable else ("frozen", "trainable")
            raise ShapeError(
                f"{pname} tied to {owner!r}, but {label} is {state[0]} and this layer is {state[1]};"
                " a tied tensor is one parameter: give both layers the same trainable",
                value=owner,
            )


def _first_leaf(nodes: list[Node], x: Shape) -> Layer | None:
    """The layer that runs first in a sequence of entries on input x (None if there is none)."""
    for node in nodes:
        try:
            node = node.layer.at_input(node, x)  # what runs there (a template instance's layers)
        except ShapeError:
            return None  # the analysis meets it again, and says where
        sequences = node.layer.sequences()
        if not sequences:
            return node.layer
        for _, seq in sequences:
            leaf = _first_leaf(seq, x)
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
    reads = {name: flow.stream(name, "cross:") for name in layer.reads()}
    if reads:  # a copy that knows the shapes of what it reads, for its shape, cost and numerics
        layer = layer.reading(reads)
    layer = layer.sharing(flow.offered)
    y = layer.output_shape(x)
    shapes = layer.param_shapes(x)
    shared = layer.shared_params()
    for pname, owner in shared.items():
        flow.check_tied(pname, owner, shapes[pname], node.trainable)
    own = {k: v for k, v in shapes.items() if k not in shared}  # a tied tensor counts at its owner
    flow.owned[node.name] = (node.label, own, node.trainable)
    if layer.offers():
        flow.lent[node.name] = flow.owned[node.name]
        flow.offered.update((kind, (node.name, value)) for kind, value in layer.offers().items())
    flow.tokens = False
    entry = Entry(
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
        cache=sum(numel(s) for s in layer.cache_shapes(x).values()),
        trainable=node.trainable,
        # a frozen layer's adapters still train
        trainable_params=None if node.trainable else layer.adapter_params(x),
    )
    entry.reads = reads
    return entry


def _block(node: Node, seg: str, x: Shape, flow: Flow) -> Entry:
    layer = node.layer
    flow.blocks[node.name] = node.label
    sequences: list[list[Entry]] = []
    outs: list[Shape] = []
    tokens, still_tokens, firsts = flow.tokens, [], []
    inner = layer.inner_shape(x)
    for prefix, seq in layer.sequences():
        flow.tokens = tokens  # every child sequence starts from the block's input
        if not node.trainable:  # a frozen block freezes the children it makes itself too (a router)
            seq = [child._replace(trainable=False) for child in seq]
        out, entries = analyse_sequence(seq, inner, prefix, flow=flow)
        outs.append(out)
        sequences.append(entries)
        still_tokens.append(flow.tokens)
        firsts += entries[:1]
    flow.tokens = all(still_tokens)
    y = layer.combine(x, outs)
    # ids drawn for the block's input must suit every child that reads them
    bounds = [e.ids for e in firsts if e.ids is not None]
    entry = Entry(
        seg=seg, name=node.name, type=layer.type_name, input_shape=x, output_shape=y, sequences=sequences,
        layer=layer, ids=min(bounds) if tokens and bounds else None, trainable=node.trainable,
    )
    _sum_children(entry, extra_tensor=numel(y) if layer.creates_tensor else 0)
    return entry


def _sum_children(entry: Entry, extra_tensor: int = 0) -> None:
    """Fill a block's numbers from its children: their parameters and buffers as many times as the
    block holds them, their costs as many times as they run."""
    held = [pair for seq in entry.held() for pair in seq]
    entry.params = sum(n * child.params for child, n in held)
    entry.trainable_params = sum(n * child.trainable_params for child, n in held)
    entry.buffers = sum(n * child.buffers for child, n in held)
    timed = [pair for seq in entry.timed() for pair in seq]
    entry.macs = sum(n * child.macs for child, n in timed)
    entry.tensors = sum(n * child.tensors for child, n in timed) + extra_tensor
    entry.cache = sum(n * child.cache for child, n in timed)
    entry.reads = {name: shape for child, _ in timed for name, shape in child.reads.items()}


def analyse_node(node: Node, x: Shape, seg: str, flow: Flow | None = None) -> Entry:
    """Analyse one entry (with its repeat) for input shape x; errors get the entry's location."""
    flow = flow if flow is not None else Flow()
    try:
        if node.repeat == 1:
            node = node.layer.at_input(node, x)
            return (_block if node.layer.sequences() else _leaf)(node, seg, x, flow)
        return _repeat(node, x, seg, flow)
    except ShapeError as exc:
        raise exc.at(line=node.loc.line, where=node.loc.where, layer=node.loc.layer) from None


def _repeat(node: Node, x: Shape, seg: str, flow: Flow) -> Entry:
    one = node._replace(repeat=1)  # one copy; analyse_node gives its errors the entry's location
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
        sequences=[copies],
        copies=node.repeat,
        ids=copies[0].ids,
        trainable=node.trainable,
    )
    _sum_children(entry)
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
        if top:  # what a layer offers (a shared position bias) stays within its top-level entry
            flow.offered, flow.lent = {}, {}
        entry = analyse_node(node, x, f"{prefix}.{own}" if prefix else own, flow)
        entries.append(entry)
        x = entry.output_shape
    return x, entries


class Execution(NamedTuple):
    """One row of the run table: an entry at its place in execution order, standing for `copies` runs.

    A row stands for one run of its entry, or (a repeat's identical tail) for several in a row;
    `copies` multiplies those by the runs of every row above it, so a count over the whole network
    is a fold: the sum of copies × the entry's own number over the rows that own that number.
    """

    entry: Entry
    path: str  # dotted position; a folded row's last segment is a range of copies: "blocks.2-999"
    name: str
    depth: int  # 0 for a top-level entry
    copies: int  # runs in all: the copies this row folds together times those of every row above it
    grad: bool  # its (first) input depends on a trainable parameter, so the backward computes dL/dx
    listed: bool  # a row of the report (Report.walk): not below a row that folds several copies
    size: int  # rows below it: its subtree is the `size` rows after it
    at: int  # its index in its table
    # parameter sets in all: copies, but below a block that holds more of a child than it runs
    # (a mixture of experts: every expert is held, top_k of them run per token)
    held: int

    @property
    def leaf(self) -> bool:
        """A layer (not a block or a repeat group): the rows whose own numbers the totals add."""
        return self.entry.layer is not None and not self.entry.sequences

    @property
    def trains(self) -> bool:
        """Its parameters get a gradient (not frozen by its own or an enclosing `trainable: false`)."""
        return self.entry.trainable

    @property
    def input_shape(self) -> Shape:
        """Its input shape (batch first)."""
        return self.entry.input_shape

    @property
    def output_shape(self) -> Shape:
        """Its output shape (batch first)."""
        return self.entry.output_shape


def fold(rows: Iterable[Execution], value: Callable[[Execution], int], held: bool = False) -> int:
    """Sum of value(row) × row.copies over the rows: a count of every run they stand for; held: ×
    row.held instead, a count of every parameter set (what is stored rather than what runs)."""
    return sum((row.held if held else row.copies) * value(row) for row in rows)


def _place(run: Run, path: str, name: str, depth: int, n: int, m: int, listed: bool, out: list[Execution]) -> None:
    """Append the rows of `n` runs (`m` parameter sets) of `run` to out: its own, then its
    children's in execution order.

    Repeats are laid out as the report lists them (Report.walk); below a row that folds several
    copies the rows are the same, but not listed (the report shows the folded row alone). A child
    a block holds several of (experts) is one row whose path ends in their range: experts.0-7.
    """
    at = len(out)
    out.append(None)  # type: ignore[arg-type]  # its own row, once the size of its subtree is known
    entry, below, held = run.entry, n * run.times, m * run.held
    inner = listed and run.times == 1 and run.held == 1
    for seq in entry.runs(run.grad):
        if entry.copies:
            _place_copies(seq, entry.copies, path, name, depth + 1, below, held, inner, out)
            continue
        for child in seq:
            span = f".0-{child.held - 1}" if child.held > 1 else ""
            _place(child, f"{path}.{child.entry.seg}{span}", child.entry.name + span, depth + 1, below, held, inner, out)
    out[at] = Execution(entry, path, name, depth, below, run.grad, listed, len(out) - at - 1, at, held)


def _place_copies(
    seq: list[Run], copies: int, path: str, name: str, depth: int, n: int, m: int, listed: bool, out: list[Execution]
) -> None:
    """Append the rows of a repeat group's copies: each copy of a short repeat, else each distinct
    copy and then one row for the identical rest of the last (its input's gradient as the later runs')."""
    k = 0  # copy number within the group
    for child in seq:
        each = child.times if copies <= LISTED_COPIES else 1
        grad = child.grad
        for j in range(each):
            _place(Run(child.entry, 1, grad, 1), f"{path}.{k + j}", f"{name}.{k + j}", depth, n, m, listed, out)
            grad = child.later_grad
        k += each
        rest = child.times - each  # only the last distinct copy has a tail
        if rest:  # the identical tail: one row for all of it (a plain row if it is one copy)
            span = f"{k}-{k + rest - 1}" if rest > 1 else str(k)
            _place(Run(child.entry, rest, grad, rest), f"{path}.{span}", f"{name}.{span}", depth, n, m, listed, out)


def entry_table(entry: Entry, grad: bool = False) -> tuple[Execution, ...]:
    """The run table of one run of an entry (any entry, a made-up one too): its row, then every
    row below it, none of them listed (they are not the report's rows)."""
    if grad or entry.table is None:  # the tree below an entry does not change once analysed: build it once
        out: list[Execution] = []
        _place(Run(entry, 1, grad, 1), entry.seg, entry.name, 0, 1, 1, False, out)
        if grad:
            return tuple(out)
        entry.table = tuple(out)
    return entry.table


def select(
    rows: Sequence[Execution], under: Execution | None = None, *, grad: bool | None = None,
    listed: bool | None = None, leaf: bool | None = None, depth: int | None = None,
) -> list[Execution]:
    """The rows of a table (under: that row and its subtree) with the given flags, at most `depth` deep."""
    if under is not None:
        if rows[under.at] is not under:
            raise ValueError(f"{under.path!r} is not a row of this table")
        rows = rows[under.at: under.at + under.size + 1]
    return [
        x for x in rows
        if (grad is None or x.grad == grad) and (listed is None or x.listed == listed)
        and (leaf is None or x.leaf == leaf) and (depth is None or x.depth <= depth)
    ]


class Report:
    """The analysed network: rows for every layer at every depth, and exact totals."""

    # api.render, set by api: the calculator draws no tables, and imports nothing that does
    renderer: ClassVar[Callable[..., str] | None] = None

    def __init__(self, network: Network, entries: list[Entry], tokens: bool = False,
                 ids: dict[str, bool] | None = None) -> None:
        self.network = network
        self.entries = entries
        self.dtype_bytes = network.dtype_bytes
        self.tokens = tokens  # the (first) input is integer token ids (int64), not values of the dtype
        self.ids = ids or {}  # named inputs: whether each is token ids

    @property
    def input_bytes(self) -> int:
        """Bytes of the whole batch's input (every named input): dtype-sized values, or int64 token ids."""
        if self.network.inputs:
            n = self.network.batch
            return sum(n * numel(shape) * (TOKEN_ID_BYTES if self.ids.get(name) else self.dtype_bytes)
                       for name, shape in self.network.streams().items())
        return numel(self.network.input_shape) * (TOKEN_ID_BYTES if self.tokens else self.dtype_bytes)

    @property
    def total(self) -> dict[str, int]:
        """Totals over the whole network (blocks' numbers are not counted twice).

        `estimated_total_bytes` = input + activations (every layer's output) + params, as
        torchinfo's "Estimated Total Size"; buffers and a decoder's KV cache are not in it.
        """
        top = self.executions(depth=0)  # the top-level rows, each with the numbers of its subtree

        def count(value: Callable[[Entry], int]) -> int:
            return fold(top, lambda row: value(row.entry))

        params = count(lambda e: e.params)
        trainable = count(lambda e: e.trainable_params)
        macs = count(lambda e: e.macs)
        cache = count(lambda e: e.cache)
        activation_bytes = count(lambda e: e.tensors) * self.dtype_bytes
        param_bytes = params * self.dtype_bytes
        input_bytes = self.input_bytes
        total = {
            "params": params,
            "trainable_params": trainable,
            "frozen_params": params - trainable,
            "buffers": count(lambda e: e.buffers),
            "macs": macs,
            "flops": 2 * macs,
            "activation_bytes": activation_bytes,
            "param_bytes": param_bytes,
            "input_bytes": input_bytes,
            "estimated_total_bytes": input_bytes + activation_bytes + param_bytes,
        }
        if cache:  # decoders only: the keys and values a generation at this sequence length keeps
            total["kv_cache_bytes"] = cache * self.dtype_bytes
        if self.routed:  # a token passes through top_k experts of each mixture: the params it meets
            total["active_params"] = self.fold(lambda row: row.entry.params)
        return total

    @cached_property
    def routed(self) -> bool:
        """True when a block holds more copies of a child than a token runs through (a mixture of experts)."""
        return any(held > 1 for row in self.run_table for held, _ in row.entry.multiples)

    @property
    def output_shape(self) -> Shape:
        """The network's output shape (batch first)."""
        return self.entries[-1].output_shape if self.entries else self.network.input_shape

    @cached_property
    def run_table(self) -> tuple[Execution, ...]:
        """Every run of every entry, in execution order (an entry's row before its children's):
        the one walk over the tree, which every count of the report and its conventions folds."""
        out: list[Execution] = []
        for run in _chain([(e, 1, 1) for e in self.entries], grad=False):
            _place(run, run.entry.seg, run.entry.name, 0, 1, 1, True, out)
        return tuple(out)

    def executions(
        self, under: Execution | None = None, *, grad: bool | None = None, listed: bool | None = None,
        leaf: bool | None = None, depth: int | None = None,
    ) -> list[Execution]:
        """Rows of the run table (under: that row and everything below it) with the given flags."""
        return select(self.run_table, under, grad=grad, listed=listed, leaf=leaf, depth=depth)

    def fold(self, value: Callable[[Execution], int], under: Execution | None = None, held: bool = False) -> int:
        """A count over every run of the layers (under one row): value(row) × its copies, summed over
        leaves; held: over every parameter set instead (× row.held)."""
        return fold(self.executions(under, leaf=True), value, held)

    def walk(self, depth: int | None = None) -> Iterator[Execution]:
        """Every row in execution order, blocks below `depth` folded into their row.

        A repeat lists each copy; one of more than LISTED_COPIES copies lists its distinct copies,
        then one row that stands for all the rest (Execution.copies of them).
        """
        yield from self.executions(listed=True, depth=depth)

    def rows(
        self, depth: int | None = None, macs: Callable[[Execution], int | None] | None = None,
        backward: Callable[[Execution], int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One plain dict per row of walk(depth); a folded row's numbers are the sum over its copies.

        `macs` replaces each row's MAC count (a peer convention's; None = not counted);
        `backward` adds a `backward_macs` field.
        """
        for row in self.walk(depth):
            e, n, held = row.entry, row.copies, row.held
            count = e.macs * n if macs is None else macs(row)
            out = {
                "path": row.path,
                "name": row.name,
                "type": e.type,
                # the non-default arguments, compact ("3→64 k7 s2 p3 no_bias"); "" for a repeat group
                "arguments": e.layer.brief(e.input_shape, e.output_shape) if e.layer is not None else "",
                "depth": row.depth,
                "input_shape": list(e.input_shape),
                "output_shape": list(e.output_shape),
                "params": e.params * held,
                "trainable": e.trainable,
                "trainable_params": e.trainable_params * held,
                "buffers": e.buffers * held,
                "macs": count,
                "flops": None if count is None else 2 * count,
                "activation_bytes": numel(e.output_shape) * self.dtype_bytes * n,
            }
            if held > 1:  # a folded row says how many copies it stands for
                out["copies"] = held
            if n != held:  # experts: the copies a token runs through (top_k of them), which the costs count
                out["active_copies"] = n
            if backward is not None:
                out["backward_macs"] = backward(row)
            yield out

    def __repr__(self) -> str:
        """<Report resnet18: input 3x224x224, batch 1, 11,689,512 params, 1,814,073,344 MACs>"""
        net, total = self.network, self.total
        return (f"<Report {net.name}: input {fmt_shape(net.input)}, batch {net.batch},"
                f" {total['params']:,} params, {total['macs']:,} MACs>")

    def table(self, width: int = 100, command: str = "summary", **options: Any) -> str:
        """The table `layercalc summary` prints (or params/flops/shapes), as plain text `width`
        columns wide; options are api.report_data's (depth, convention, training, by_type, ...)."""
        if Report.renderer is None:
            raise RuntimeError("no renderer: import layercalc.api, which sets Report.renderer")
        return Report.renderer(self, "table", command, width, **options)

    def __str__(self) -> str:
        """The summary table, so print(report) shows what the command line shows."""
        return self.table()

    def to_dict(
        self, depth: int | None = None, macs: Callable[[Execution], int | None] | None = None,
        backward: Callable[[Execution], int] | None = None,
    ) -> dict[str, Any]:
        """The SPEC's JSON object: name, input, batch, dtype, layers, total."""
        net = self.network
        return {
            "name": net.name,
            "input": {k: list(v) for k, v in net.streams().items()} if net.inputs else list(net.input),
            "batch": net.batch,
            "dtype": net.dtype,
            "input_dtype": "int64" if self.tokens else net.dtype,  # token ids are int64, as torch.long
            "layers": list(self.rows(depth, macs, backward)),
            "total": self.total,
        }


def _reads_ids(node: Node, x: Shape) -> bool:
    """Whether an entry on input x begins a stream of token ids (its first layer reads them)."""
    first = _first_leaf([node], x)
    return first is not None and first.input_ids() is not None


def analyse(network: Network) -> Report:
    """Analyse a loaded network; raises ConfigError (with location) when a shape does not fit."""
    try:
        if network.inputs or any(node.source for node in network.nodes):
            entries, ids = _analyse_streams(network)
            lora.unmatched(entries)
            return Report(network, entries, tokens=ids.get(network.main_input or "", False), ids=ids)
        # a network whose first layer reads token ids takes integer ids as its input
        tokens = _reads_ids(network.nodes[0], network.input_shape) if network.nodes else False
        _, entries = analyse_sequence(network.nodes, network.input_shape, top=True, flow=Flow(tokens=tokens))
        lora.unmatched(entries)
    except ConfigError as exc:
        raise exc.at(file=network.file) from None
    return Report(network, entries, tokens=tokens)


def _analyse_streams(network: Network) -> tuple[list[Entry], dict[str, bool]]:
    """Top-level entries reading named inputs and earlier entries' outputs (`from:`); returns the
    entries and, for each named input, whether it is token ids (read by an embedding)."""
    named = {name: (network.batch, *shape) for name, shape in network.streams().items()}
    flow, entries = Flow(), []
    ids: dict[str, bool] = {}  # named input -> read as token ids (decided by its first reader)
    x: Shape = network.input_shape
    for i, node in enumerate(network.nodes):
        check_source(node, [*named, *(e.name for e in entries)])
        if node.source in named:
            x = named[node.source]
            tokens = _reads_ids(node, x)
            if ids.get(node.source, tokens) != tokens:
                how = "token ids" if tokens else "real values"
                raise ShapeError(f"reads input {node.source!r} as {how}, but an earlier entry reads it otherwise;"
                                 " one input feeds one kind of stream", value=node.source).at(
                    line=node.loc.line, where=node.loc.where, layer=node.loc.layer)
            ids[node.source] = tokens
        elif node.source is not None:
            x, tokens = next(e.output_shape for e in entries if e.name == node.source), False
        else:
            tokens = i == 0 and _reads_ids(node, x)
        flow.tokens, flow.offered, flow.lent = tokens, {}, {}
        flow.streams = {**{k: (v, ids.get(k, False)) for k, v in named.items()},
                        **{e.name: (e.output_shape, False) for e in entries}}
        entry = analyse_node(node, x, node.name, flow)
        for name in entry.reads:  # a named input read by cross-attention is real values
            if name in named:
                ids.setdefault(name, False)
        entry.source = node.source
        entries.append(entry)
        x = entry.output_shape
    return entries, ids
