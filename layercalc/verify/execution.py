"""NumPy execution of an analysed network: instances with their own parameter arrays, mirroring
the analysis tree, and a generic forward and backward that only layers and blocks' merge rules know.

A user's implementation (`verify --impl`) runs inside these; whatever it raises comes out as
UserCodeError naming the layer, so that verify reports a failed check instead of crashing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ..analysis import Entry
from ..lazy import np

Watch = Callable[["Instance", Any], None]  # sees every leaf's input during a forward
GradSink = Callable[["Instance", dict[str, Any]], None]  # receives each leaf's parameter gradients


class UserCodeError(Exception):
    """A user's layer implementation raised: which instance, in which method, and the exception."""

    def __init__(self, inst: "Instance", method: str, exc: BaseException) -> None:
        super().__init__(f"{inst.path} ({inst.layer.type_name}): {method}() raised {type(exc).__name__}: {exc}")
        self.inst, self.method, self.exc = inst, method, exc


class Chain:
    """The merge rule of a repeat group: its copies run one after another."""

    type_name = "repeat"
    kinks: tuple[float, ...] = ()

    def merge(self, outs: list[Any]) -> Any:
        return outs[0]

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        return [dy]

    def arguments(self) -> dict[str, Any]:
        return {}


class Instance:
    """A layer or block with its own parameter arrays, mirroring one analysis Entry."""

    __slots__ = ("entry", "path", "name", "layer", "reference", "params", "sequences")

    def __init__(self, entry: Entry, path: str, name: str, layer: Any) -> None:
        self.entry, self.path, self.name, self.layer = entry, path, name, layer
        self.reference: Any = None  # the catalog layer, when `layer` is a user's implementation
        self.params: dict[str, Any] = {}
        self.sequences: list[list[Instance]] = []

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
        copies = [run.entry for seq in entry.runs() for run in seq for _ in range(run.times)]
        inst.sequences = [[build(c, f"{path}.{k}", f"{name}.{k}", rng, impl, dtype) for k, c in enumerate(copies)]]
        return inst
    layer = entry.layer
    inst = Instance(entry, path, name, layer)
    if entry.sequences:
        for kids in entry.sequences:
            inst.sequences.append([build(kid, _join(path, kid.seg), kid.name, rng, impl, dtype) for kid in kids])
        return inst
    inst.params = {pname: np.asarray(arr, dtype=dtype) for pname, arr in layer.init_params(entry.input_shape, rng).items()}
    if impl is not None and layer.type_name == impl.type_name:
        user = impl.__new__(impl)
        user.__dict__.update(layer.__dict__)  # the same arguments, the user's methods
        inst.layer, inst.reference = user, layer
    return inst


def _join(path: str, seg: str) -> str:
    return f"{path}.{seg}" if path else seg


def _call(inst: Instance, method: str, *args: Any) -> Any:
    """A leaf's forward or backward; a user's implementation that raises becomes UserCodeError."""
    fn = getattr(inst.layer, method)
    if inst.reference is None:
        return fn(*args)
    try:
        return fn(*args)
    except Exception as exc:  # the user's code, not ours: report it as their layer's failure
        raise UserCodeError(inst, method, exc) from exc


Tape = dict  # block (and leaf given as a key beforehand) -> [x, y, dy, dx]; ("outs", block) -> its sequences' outputs


def forward(inst: Instance, x: Any, watch: Watch | None = None, tape: Tape | None = None) -> tuple[Any, Any]:
    """Output and cache of an instance (recursing into blocks); watch(leaf, input) sees each leaf's
    input; tape, when given, keeps every inner block's input and output (references, not copies)."""
    if inst.is_leaf:
        if watch is not None:
            watch(inst, x)
        return _call(inst, "forward", x, inst.params)
    outs, caches = [], []
    for seq in inst.sequences:
        h, seq_caches = x, []
        for child in seq:
            entry = [h, None, None, None]
            h, c = forward(child, h, watch, tape)
            if tape is not None and (not child.is_leaf or child in tape):  # leaves only when asked for
                entry[1] = h
                tape[child] = entry
            seq_caches.append(c)
        outs.append(h)
        caches.append(seq_caches)
    if tape is not None:
        tape[("outs", inst)] = list(outs)  # what the block's merge rule received
    return inst.layer.merge(outs), (outs, caches)


def output(inst: Instance, x: Any, watch: Watch | None = None) -> Any:
    """The output alone, each cache dropped as soon as the next layer has run (less memory)."""
    if inst.is_leaf:
        if watch is not None:
            watch(inst, x)
        return _call(inst, "forward", x, inst.params)[0]
    outs = []
    for seq in inst.sequences:
        h = x
        for child in seq:
            h = output(child, h, watch)
        outs.append(h)
    return inst.layer.merge(outs)


def backward(inst: Instance, dy: Any, cache: Any, grads: dict[Instance, dict[str, Any]] | GradSink, tape: Tape | None = None) -> Any:
    """dL/dx of an instance; parameter gradients go to grads[instance] (or to grads(instance, g));
    the tape, when given, gets every inner block's dL/dy and dL/dx."""
    if inst.is_leaf:
        dx, g = _call(inst, "backward", dy, inst.params, cache)
        if callable(grads):
            grads(inst, g)
        else:
            grads[inst] = g
        return dx
    outs, caches = cache
    dx = None
    for seq, seq_caches, d in zip(inst.sequences, caches, inst.layer.split(dy, outs)):
        for i in range(len(seq) - 1, -1, -1):
            d_out = d
            d = backward(seq[i], d, seq_caches[i], grads, tape)
            if tape is not None and seq[i] in tape:
                tape[seq[i]][2:] = [d_out, d]
            seq_caches[i] = None  # free each cache once used: the backward's memory shrinks as it goes
        dx = d if dx is None else dx + d
    return dx
