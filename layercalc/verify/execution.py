"""NumPy execution of an analysed network: instances with their own parameter arrays, mirroring
the analysis tree, and a generic forward and backward that only layers and blocks' merge rules know.

A user's implementation (`verify --impl`) runs inside these; whatever it raises comes out as
UserCodeError naming the layer, so that verify reports a failed check instead of crashing.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

from ..analysis import Entry
from ..errors import one_line
from ..layers import numel
from ..layers.numerics import STREAM_PREFIX, stream_key
from ..lazy import np

Watch = Callable[["Instance", Any], None]  # sees every leaf's input during a forward
GradSink = Callable[["Instance", dict[str, Any]], None]  # receives each leaf's parameter gradients


class UserCodeError(Exception):
    """A user's layer implementation failed: which instance, in which method, and what went wrong
    (the exception it raised, or `problem`: what was wrong with what it returned)."""

    def __init__(self, inst: "Instance", method: str, exc: BaseException, problem: str = "") -> None:
        self.inst, self.method, self.exc = inst, method, exc
        self.detail = one_line(problem or raised(exc))
        if method == "__init__":
            self.detail += (" (verify calls __init__ with the layer's arguments as keywords, as PyTorch builds "
                            "a module: see docs/verify.md, 'Checking your own layer')")
        self.verb = "returned" if problem else "raised" if not isinstance(exc, SystemExit) else "called"
        super().__init__(f"{inst.path} ({inst.layer.type_name}): {method}() {self.verb} {self.detail}")


def raised(exc: BaseException) -> str:
    """What an exception says, as `Type: text` (sys.exit's as `sys.exit(code)`), on one line."""
    if isinstance(exc, SystemExit):  # not a failure of its own making: the code asked to end the process
        return f"sys.exit({'' if exc.code is None else repr(exc.code)})"
    try:
        text = str(exc)
    except Exception:  # a user's exception whose __str__ itself fails
        text = "(its message could not be printed)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BadReturn(Exception):
    """What a user's forward or backward returned cannot be what the interface asks for."""


class Chain:
    """The merge rule of a repeat group: its copies run one after another."""

    type_name = "repeat"
    kinks: tuple[float, ...] = ()

    def merge(self, outs: list[Any]) -> Any:
        return outs[0]

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        return [dy]

    def routed_rows(self, k: int, outs: list[Any]) -> Any:
        return None

    def arguments(self) -> dict[str, Any]:
        return {}


class Routes:
    """The merge rule of a network of several streams: each top-level entry reads its `source`
    (a named input or an earlier entry's output), the network's output is the last entry's."""

    type_name = "network"
    kinks: tuple[float, ...] = ()

    def __init__(self, main: str, sources: list[str], inputs: dict[str, int | None],
                 shapes: dict[str, tuple[int, ...]]) -> None:
        self.main = main  # the named input the network's x is ("" when it has no name)
        self.sources = sources  # per top-level entry, the name of what it reads
        self.inputs = inputs  # the other named inputs: name -> token id bound (None: real values)
        self.shapes = shapes  # their shapes, batch first

    def arguments(self) -> dict[str, Any]:
        return {}


class Streams:
    """The values of the streams layers read besides their input (named inputs, top-level
    entries' outputs) during one check, and the gradients reaching them in its backward."""

    __slots__ = ("values", "grads")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}

    def add_grad(self, name: str, g: Any) -> None:
        """Accumulate dL/d(stream) from one more reader."""
        self.grads[name] = g if name not in self.grads else self.grads[name] + g


class Instance:
    """A layer or block with its own parameter arrays, mirroring one analysis Entry."""

    __slots__ = ("entry", "path", "name", "layer", "reference", "params", "sequences", "broken", "streams")

    def __init__(self, entry: Entry, path: str, name: str, layer: Any) -> None:
        self.entry, self.path, self.name, self.layer = entry, path, name, layer
        self.reference: Any = None  # the catalog layer, when `layer` is a user's implementation
        self.broken: BaseException | None = None  # what the user's __init__ raised: every call fails with it
        self.params: dict[str, Any] = {}
        self.sequences: list[list[Instance]] = []
        self.streams = Streams()  # one object for a whole checked tree (share_streams)

    @property
    def is_leaf(self) -> bool:
        """True for a layer (every block and repeat group has at least one child sequence)."""
        return not self.sequences

    def walk(self) -> Iterator["Instance"]:
        """This instance and all below it, children first (post-order), in execution order."""
        for seq in self.sequences:
            for child in seq:
                yield from child.walk()
        yield self

    def leaves(self) -> list["Instance"]:
        """The layers in this subtree, in execution order."""
        return [i for i in self.walk() if i.is_leaf]

    def all_params(self) -> list[tuple["Instance", str, Any]]:
        """Every parameter array in this subtree, with its owner and name."""
        return [(inst, name, arr) for inst in self.walk() for name, arr in inst.params.items()]

    def entry_leaves(self) -> list["Instance"]:
        """The layers that read this instance's input directly (the first of each sequence)."""
        if self.is_leaf:
            return [self]
        return [leaf for seq in self.sequences if seq for leaf in seq[0].entry_leaves()]


def build(entry: Entry, path: str, name: str, rng: Any, impl: Any = None, dtype: str = "float64") -> Instance:
    """Instances (with random parameters of dtype) for an analysed entry and everything below."""
    if entry.copies:  # a repeat group: every copy gets its own parameters
        inst = Instance(entry, path, name, Chain())
        copies = [c for seq in entry.timed() for c, n in seq for _ in range(n)]
        inst.sequences = [[build(c, f"{path}.{k}", f"{name}.{k}", rng, impl, dtype) for k, c in enumerate(copies)]]
        return inst
    layer = entry.layer
    inst = Instance(entry, path, name, layer)
    if entry.sequences:
        # a sequence the block holds several of (experts) gets one of its own per copy; the first
        # keeps the run table's path (experts.0-7), whose checks stand for every copy, as a repeat's do
        for kids, (copies, _) in zip(entry.sequences, entry.multiples or [(1, 1)] * len(entry.sequences)):
            for j in range(copies):
                at = "" if copies == 1 else f".0-{copies - 1}" if j == 0 else f".{j}"
                inst.sequences.append([build(kid, _join(path, kid.seg) + at, kid.name + at, rng, impl, dtype)
                                       for kid in kids])
        return inst
    inst.params = {pname: np.asarray(arr, dtype=dtype) for pname, arr in layer.init_params(entry.input_shape, rng).items()}
    if impl is not None and layer.type_name == impl.type_name:
        inst.layer, inst.reference = impl.__new__(impl), layer
        inst.broken = _built(inst.layer, layer)
    return inst


def _built(user: Any, layer: Any) -> BaseException | None:
    """Give a user's object the catalog layer's attributes (its arguments and their normalised
    forms), then run the user's own __init__, if the class defines one, with the layer's arguments
    as keywords (those its signature names, unless it takes **kwargs), as PyTorch builds a module;
    what it raises (None when nothing)."""
    user.__dict__.update(layer.__dict__)
    init = type(user).__init__
    if getattr(init, "__module__", "").startswith("layercalc."):  # the catalog's own (or no) __init__
        return None
    given = layer.arguments()
    try:
        named = inspect.signature(init).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in named):  # the arguments it names, as nn.Linear(in_features, ...)
            given = {p.name: given[p.name] for p in named if p.name in given}
        init(user, **given)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return exc
    return None


def share_streams(root: Instance) -> Instance:
    """Give every instance of a checked tree the root's streams: a layer deep inside reads what
    the check drew (or the network computed) for the stream it names."""
    for inst in root.walk():
        inst.streams = root.streams
    return root


def with_streams(inst: Instance, params: dict[str, Any]) -> dict[str, Any]:
    """A leaf's parameters, with the streams its layer reads under their stream keys."""
    reads = inst.layer.reads() if hasattr(inst.layer, "reads") else ()
    if not reads:
        return params
    return {**params, **{stream_key(name): inst.streams.values[name] for name in reads}}


def _stream_grads(inst: Instance, grads: dict[str, Any]) -> dict[str, Any]:
    """A leaf's parameter gradients, the gradients of the streams it read moved to its streams."""
    keys = [k for k in grads if k.startswith(STREAM_PREFIX)]
    for key in keys:
        inst.streams.add_grad(key[len(STREAM_PREFIX):], grads.pop(key))
    return grads


def _join(path: str, seg: str) -> str:
    return f"{path}.{seg}" if path else seg


def call(inst: Instance, method: str, *args: Any) -> Any:
    """A leaf's forward or backward. A user's implementation that raises anything but Ctrl-C
    (sys.exit and GeneratorExit included: a check must never end the process or pass by leaving),
    or returns what the interface cannot take, becomes UserCodeError: a failed check of that layer."""
    fn = getattr(inst.layer, method)
    if inst.reference is None:
        return fn(*args)
    if inst.broken is not None:
        raise UserCodeError(inst, "__init__", inst.broken)
    try:
        out = fn(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's code, not ours: report it as their layer's failure
        raise UserCodeError(inst, method, exc) from exc
    problem = (_bad_forward if method == "forward" else _bad_backward)(inst, out, args)
    if problem:
        raise UserCodeError(inst, method, BadReturn(problem), problem)
    if method == "forward":
        # y becomes the next layer's input, which the numeric checks move in place: verify's own
        # copy, so that it never writes into the user's arrays (a read-only view, their cache)
        return np.array(out[0], order="C"), out[1]
    return out


def _kind(v: Any) -> str:
    """A value's kind in words: 'None', 'a list of 3 items', 'an array of shape 3x4'."""
    if v is None:
        return "None"
    if isinstance(v, np.ndarray):
        return f"an array of shape {'x'.join(map(str, v.shape)) or '()'}"
    if isinstance(v, (list, tuple, dict)):
        return f"a {type(v).__name__} of {len(v)} items"
    return f"a {type(v).__name__}"


def _bad_forward(inst: Instance, out: Any, args: tuple[Any, ...]) -> str:
    """What is wrong with forward's return value ('' when nothing): it must be (y, cache), y an
    array of the calculated output shape (a wrong y would break the next layer, not this one)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return f"{_kind(out)}, expected (y, cache)"
    y = out[0]
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "fc":
        return f"y as {_kind(y)}{'' if not isinstance(y, np.ndarray) else f' of dtype {y.dtype}'}, expected a float array"
    want = _expected(inst.entry.input_shape, inst.entry.output_shape, args[0])
    if y.shape != want:
        return f"y of shape {'x'.join(map(str, y.shape))}, expected {'x'.join(map(str, want))} (the calculated output shape)"
    return ""


def _expected(given: tuple[int, ...], wanted: tuple[int, ...], handed: Any) -> tuple[int, ...]:
    """The shape a leaf must return (wanted, its calculated one) for the array it was handed (given,
    the calculated shape of that one): wanted, its first axis cut to the rows handed when a block
    ran the leaf on some of its rows (a mixture's expert on its tokens)."""
    shape = tuple(np.shape(handed))
    if shape == tuple(given) or not shape or not wanted:
        return tuple(wanted)
    return (shape[0], *wanted[1:])


def _bad_backward(inst: Instance, out: Any, args: tuple[Any, ...]) -> str:
    """What is wrong with backward's return value ('' when nothing): (dx, grads), dx an array of
    the input's shape (None for token ids, which have no gradient) and grads a dict with one array
    per parameter, of its shape."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return f"{_kind(out)}, expected (dx, grads)"
    dx, grads = out
    shape = _expected(inst.entry.output_shape, inst.entry.input_shape, args[0])
    if dx is None and inst.layer.input_ids() is None:
        return f"dx as None, expected an array of shape {'x'.join(map(str, shape))}"
    if dx is not None and (not isinstance(dx, np.ndarray) or dx.shape != shape):
        return f"dx as {_kind(dx)}, expected an array of shape {'x'.join(map(str, shape))} (the input's)"
    if not isinstance(grads, dict):
        return f"grads as {_kind(grads)}, expected a dict of parameter gradients"
    for pname, arr in inst.params.items():
        g = grads.get(pname)
        if not isinstance(g, np.ndarray) or g.shape != arr.shape:
            return f"grads[{pname!r}] as {_kind(g)}, expected an array of shape {'x'.join(map(str, arr.shape))}"
    return ""


Tape = dict  # block (and leaf given as a key beforehand) -> [x, y, dy, dx]; ("outs", block) -> its sequences' outputs
Run = Callable[[list["Instance"], Any], tuple[Any, Any]]  # a child sequence on its input: (its output, its caches)


def forward(inst: Instance, x: Any, watch: Watch | None = None, tape: Tape | None = None) -> tuple[Any, Any]:
    """Output and cache of an instance (recursing into blocks); watch(leaf, input) sees each leaf's
    input; tape, when given, keeps every inner block's input and output (references, not copies)."""
    if inst.is_leaf:
        if watch is not None:
            watch(inst, x)
        return call(inst, "forward", x, with_streams(inst, inst.params))
    if isinstance(inst.layer, Routes):
        return _routed_forward(inst, x, watch, tape)

    def run(seq: list[Instance], h: Any) -> tuple[Any, Any]:
        seq_caches = []
        for child in seq:
            entry = [h, None, None, None]
            h, c = forward(child, h, watch, tape)
            if tape is not None and (not child.is_leaf or child in tape):  # leaves only when asked for
                entry[1] = h
                tape[child] = entry
            seq_caches.append(c)
        return h, seq_caches

    outs, caches, rows = _sequences(inst, x, run)
    if tape is not None:
        tape[("outs", inst)] = list(outs)  # what the block's merge rule received
    return _shaped(inst.layer.merge(outs), inst.entry.output_shape), (outs, caches, rows, x.shape)


def output(inst: Instance, x: Any, watch: Watch | None = None) -> Any:
    """The output alone, each cache dropped as soon as the next layer has run (less memory)."""
    if inst.is_leaf:
        if watch is not None:
            watch(inst, x)
        return call(inst, "forward", x, with_streams(inst, inst.params))[0]
    if isinstance(inst.layer, Routes):
        routes, h = inst.layer, x
        inst.streams.values[routes.main] = x
        for child, source in zip(inst.sequences[0], routes.sources):
            h = inst.streams.values[child.name] = output(child, inst.streams.values[source], watch)
        return h

    def run(seq: list[Instance], h: Any) -> tuple[Any, Any]:
        for child in seq:
            h = output(child, h, watch)
        return h, None

    return _shaped(inst.layer.merge(_sequences(inst, x, run)[0]), inst.entry.output_shape)


def _sequences(inst: Instance, x: Any, run: Run) -> tuple[list[Any], list[Any], list[Any]]:
    """(each child sequence's output, at full size; its caches; the rows it ran on, None for all): each
    sequence run on the rows of its input the block routes to it (a mixture's expert on its tokens
    alone), its output put back at those rows, zeros elsewhere, so that merge sees full-size arrays."""
    outs: list[Any] = []
    caches, routed = [], []
    for k, seq in enumerate(inst.sequences):
        rows = inst.layer.routed_rows(k, outs)
        h = _inner(seq, x)
        n = len(h)  # the rows the sequence's input has, and its output put back to full size
        h, seq_caches = run(seq, h if rows is None else h[rows])
        outs.append(h if rows is None else _placed(h, rows, (n, *seq[-1].entry.output_shape[1:])))
        caches.append(seq_caches)
        routed.append(rows)
    return outs, caches, routed


def _placed(part: Any, rows: Any, shape: tuple[int, ...]) -> Any:
    """An array of the shape, zero but at `rows` along its first axis, which hold part."""
    full = np.zeros(shape, dtype=part.dtype)
    full[rows] = part
    return full


def _inner(seq: list[Instance], x: Any) -> Any:
    """A block's input as a child sequence reads it: reshaped where the block says (a mixture of
    experts' router and experts read the tokens flattened), else x itself."""
    return _shaped(x, seq[0].entry.input_shape) if seq and x.shape != tuple(seq[0].entry.input_shape) else x


def _shaped(a: Any, shape: tuple[int, ...]) -> Any:
    """a reshaped to a calculated shape; inside a sequence a block ran on some of its rows (an
    expert of a mixture), to that shape with the rows a has along its first axis."""
    return a.reshape(shape) if a.size == numel(shape) else a.reshape(-1, *shape[1:])


def backward(inst: Instance, dy: Any, cache: Any, grads: dict[Instance, dict[str, Any]] | GradSink, tape: Tape | None = None) -> Any:
    """dL/dx of an instance; parameter gradients go to grads[instance] (or to grads(instance, g));
    the tape, when given, gets every inner block's dL/dy and dL/dx."""
    if inst.is_leaf:
        dx, g = call(inst, "backward", dy, with_streams(inst, inst.params), cache)
        g = _stream_grads(inst, dict(g)) if isinstance(g, dict) else g
        if callable(grads):
            grads(inst, g)
        else:
            grads[inst] = g
        return dx
    if isinstance(inst.layer, Routes):
        return _routed_backward(inst, dy, cache, grads, tape)
    outs, caches, routed, shape = cache
    dx = None
    for seq, seq_caches, d, rows in zip(inst.sequences, caches, inst.layer.split(dy, outs), routed):
        if rows is not None:  # the sequence ran on these rows alone: their gradient is all it gets
            n, d = len(d), d[rows]  # n: the rows of its input, every one of which dL/dx has
        for i in range(len(seq) - 1, -1, -1):
            d_out = d
            d = backward(seq[i], d, seq_caches[i], grads, tape)
            if tape is not None and seq[i] in tape:
                tape[seq[i]][2:] = [d_out, d]
            seq_caches[i] = None  # free each cache once used: the backward's memory shrinks as it goes
        if d is not None and seq:
            d = d if rows is None else _placed(d, rows, (n, *seq[0].entry.input_shape[1:]))
            d = d.reshape(shape)
        dx = d if dx is None else dx + d
    return dx


def _routed_forward(inst: Instance, x: Any, watch: Watch | None, tape: Tape | None) -> tuple[Any, Any]:
    """A network of streams: each top-level entry on what it reads, each output kept by name."""
    routes, values = inst.layer, inst.streams.values
    values[routes.main] = x
    caches, h = [], x
    for child, source in zip(inst.sequences[0], routes.sources):
        record = [values[source], None, None, None]
        h, c = forward(child, values[source], watch, tape)
        values[child.name] = h
        if tape is not None and (not child.is_leaf or child in tape):
            record[1] = h
            tape[child] = record
        caches.append(c)
    return h, caches


def _routed_backward(inst: Instance, dy: Any, caches: list[Any], grads: Any, tape: Tape | None) -> Any:
    """The backward of a network of streams, last entry first: an entry's dL/dy is the sum over
    everything that read its output (the next entry, a `from:`, cross-attention); dL/dx of the
    network's x is returned, the other named inputs' stay in the streams' grads."""
    routes, streams, seq = inst.layer, inst.streams, inst.sequences[0]
    streams.add_grad(seq[-1].name, dy)
    for i in range(len(seq) - 1, -1, -1):
        child = seq[i]
        d = streams.grads.pop(child.name, None)
        if d is None:  # nothing downstream read it: no gradient reaches it
            d = np.zeros(child.entry.output_shape, dtype=dy.dtype)
        dx = backward(child, d, caches[i], grads, tape)
        caches[i] = None
        if tape is not None and child in tape:
            tape[child][2:] = [d, dx]
        if dx is not None:
            streams.add_grad(routes.sources[i], dx)
    return streams.grads.pop(routes.main, None)
