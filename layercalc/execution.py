"""NumPy execution of an analysed network: instances with their own parameter arrays, mirroring
the analysis tree, and a generic forward and backward that only layers and blocks' merge rules know.
"""

from __future__ import annotations

from typing import Any, Iterator

from .analysis import Entry


class Chain:
    """The merge rule of a repeat group: its copies run one after another."""

    type_name = "repeat"

    def merge(self, outs: list[Any]) -> Any:
        return outs[0]

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        return [dy]


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

    def all_params(self) -> list[tuple["Instance", str, Any]]:
        """Every parameter array in this subtree, with its owner and name."""
        return [(inst, name, arr) for inst in self.walk() for name, arr in inst.params.items()]


def build(entry: Entry, path: str, name: str, rng: Any, impl: Any = None, dtype: str = "float64") -> Instance:
    """Instances (with random float64 parameters) for an analysed entry and everything below."""
    if entry.copies:  # a repeat group: every copy gets its own parameters
        inst = Instance(entry, path, name, Chain())
        copies = [run.entry for seq in entry.runs() for run in seq for _ in range(run.times)]
        inst.sequences = [[build(c, f"{path}.{k}", f"{name}.{k}", rng, impl, dtype) for k, c in enumerate(copies)]]
        return inst
    layer = entry.layer
    inst = Instance(entry, path, name, layer)
    if entry.sequences:
        for kids in entry.sequences:
            inst.sequences.append([build(k, f"{path}.{k.seg}", k.name, rng, impl, dtype) for k in kids])
        return inst
    inst.params = {k: v.astype(dtype) for k, v in layer.init_params(entry.input_shape, rng).items()}
    if impl is not None and layer.type_name == impl.type_name:
        user = impl.__new__(impl)
        user.__dict__.update(layer.__dict__)  # the same arguments, the user's methods
        inst.layer, inst.reference = user, layer
    return inst


def forward(inst: Instance, x: Any) -> tuple[Any, Any]:
    """Output and cache of an instance (recursing into blocks)."""
    if inst.is_leaf:
        return inst.layer.forward(x, inst.params)
    outs, caches = [], []
    for seq in inst.sequences:
        h, seq_caches = x, []
        for child in seq:
            h, c = forward(child, h)
            seq_caches.append(c)
        outs.append(h)
        caches.append(seq_caches)
    return inst.layer.merge(outs), (outs, caches)


def backward(inst: Instance, dy: Any, cache: Any, grads: dict[Instance, dict[str, Any]]) -> Any:
    """dL/dx of an instance; parameter gradients are stored in grads[instance]."""
    if inst.is_leaf:
        dx, grads[inst] = inst.layer.backward(dy, inst.params, cache)
        return dx
    outs, caches = cache
    dx = None
    for seq, seq_caches, d in zip(inst.sequences, caches, inst.layer.split(dy, outs)):
        for child, c in zip(reversed(seq), reversed(seq_caches)):
            d = backward(child, d, c, grads)
        dx = d if dx is None else dx + d
    return dx
