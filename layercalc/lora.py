"""LoRA adapters: rank-r matrices beside a layer's linear maps, as peft's LoraConfig adds them.

An entry's `lora: {r, alpha, targets: [names]}` gives every linear map under it whose name matches a
target (the name itself, or a dotted name ending in ".name", as peft matches target_modules) two
trainable matrices, A (r × in) and B (out × r), no bias: W x becomes W x + B A x · alpha / r. A
linear map is a layer's 2-D `weight` (a linear layer, named by its entry) or `P.weight` (a
projection P inside a layer: attention's q_proj, an encoder layer's linear1). With
`trainable: false` the base weights stay frozen: they get no gradient and no optimizer state, but
the gradient still flows through them to the adapters before them.

An adapted layer is its own type with the adapters added to its parameters, MACs, backward and
saved tensors; alpha only scales values, so it changes no count.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
from typing import Any, Iterator, NamedTuple

from .errors import Location, SchemaError, UsageError
from .layers import Layer, Node, Shape, numel
from .layers.cost import Saved
from .layers.counting import Grad
from .layers.peers import CONV, row

LORA_KEYS = ("r", "alpha", "targets")


class Lora(NamedTuple):
    """One `lora:` mapping: rank, scale (values only) and target names, with where it was written."""

    r: int
    alpha: float
    targets: tuple[str, ...]
    loc: Location  # the `lora` key's line and the entry that holds it, for the error of a target that matches nothing


def parse(value: Any, line: int | None, label: str) -> Lora:
    """A `lora:` mapping -> Lora; SchemaError for anything else (unknown key, bad rank, no targets)."""
    loc = Location(line=line, layer=label)
    if not isinstance(value, dict):
        raise SchemaError("lora must be a mapping like {r: 8, targets: [q_proj, v_proj]}", loc, value)
    for key in value:
        if key not in LORA_KEYS:
            raise SchemaError(f"unknown key {key!r} in lora (it takes {', '.join(LORA_KEYS)})", loc, key)
    r = value.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise SchemaError(f"lora r must be a positive integer, got {r!r}", loc, r)
    alpha = value.get("alpha", r)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise SchemaError(f"lora alpha must be a number, got {alpha!r}", loc, alpha)
    targets = value.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise SchemaError(f"lora targets must be a non-empty list of linear layer names, got {targets!r}", loc, targets)
    return Lora(r, float(alpha), tuple(targets), loc)


def linears(layer: Layer, name: str, shapes: dict[str, Shape]) -> dict[str, tuple[int, int]]:
    """The layer's linear maps among its parameter shapes, by dotted name: (in, out) of each 2-D weight."""
    if layer.input_ids() is not None:  # an embedding's table is a lookup, not a linear map
        return {}
    found = {}
    for pname, shape in shapes.items():
        if len(shape) == 2 and (pname == "weight" or pname.endswith(".weight")):
            found[name if pname == "weight" else f"{name}.{pname[:-len('.weight')]}"] = (shape[1], shape[0])
    return found


def matches(target: str, name: str) -> bool:
    """peft's rule: a target names a module by its full dotted name or by its last parts."""
    return name == target or name.endswith("." + target)


class Adapted(Layer):
    """A layer with LoRA adapters on its matching linear maps; everything else is the base type's."""

    lora: Lora
    node_name: str
    base: Layer  # the layer without adapters: its own rules answer for it (calling them on self would add the adapters twice)

    def adapters(self, x: Shape) -> dict[str, tuple[int, int]]:
        """(in, out) of each adapted linear map for input x, by the map's dotted name."""
        return {name: io for name, io in linears(self.base, self.node_name, self.base.param_shapes(x)).items()
                if any(matches(t, name) for t in self.lora.targets)}

    def _parts(self, x: Shape) -> Iterator[tuple[str, int, int, int]]:
        """(parameter prefix, tokens, in, out) of each adapter: tokens = rows of x the map reads."""
        tokens = numel(x) // x[-1]
        for name, (fan_in, out) in self.adapters(x).items():
            own = name[len(self.node_name) + 1:]
            yield (f"{own}." if own else ""), tokens, fan_in, out

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        shapes = dict(self.base.param_shapes(x))
        r = self.lora.r
        for prefix, _, fan_in, out in self._parts(x):
            shapes[f"{prefix}lora_A.weight"] = (r, fan_in)
            shapes[f"{prefix}lora_B.weight"] = (out, r)
        return shapes

    def adapter_params(self, x: Shape) -> int:
        r = self.lora.r
        return sum(r * (fan_in + out) for _, _, fan_in, out in self._parts(x))

    def adapter_macs(self, x: Shape) -> int:
        """A x then B (A x): tokens · r · (in + out) for each adapter."""
        r = self.lora.r
        return sum(tokens * r * (fan_in + out) for _, tokens, fan_in, out in self._parts(x))

    def macs(self, x: Shape, y: Shape) -> int:
        return self.base.macs(x, y) + self.adapter_macs(x)

    def peer_counts(self, x: Shape, y: Shape) -> list[tuple[str, dict[str, Any]]]:
        # peft's adapters are two nn.Linear modules each, which every tool counts as linear layers
        m = self.adapter_macs(x)
        extra = row(CONV, layercalc=m, torch=m, fvcore=m, thop=m, ptflops=(m, 0), torchinfo=x[0] * self.adapter_params(x))
        return [*self.base.peer_counts(x, y), extra] if m else self.base.peer_counts(x, y)

    def backward_parts(self, x: Shape, y: Shape, input_grad: bool) -> list[Grad]:
        # h = A x, z = B h. dL/dB = dz hᵀ and dL/dh = Bᵀ dz (t·out·r each), dL/dA = dh xᵀ (t·r·in), and
        # dL/dx = Aᵀ dh (t·r·in) only when x needs it. The adapters' own gradients are marked weight=False:
        # they are what freezing the base layer does not save
        parts = list(self.base.backward_parts(x, y, input_grad))
        r = self.lora.r
        for _, tokens, fan_in, out in self._parts(x):
            parts.append(Grad(2 * tokens * out * r + tokens * r * fan_in, weight=False))
            if input_grad:
                parts.append(Grad(tokens * r * fan_in, weight=False))
        return parts

    def saved_for_backward(self, x: Shape, y: Shape, flash: bool) -> list[Saved]:
        # x is the base layer's input, kept already; each adapter adds its r-wide h = A x
        saved = list(self.base.saved_for_backward(x, y, flash))
        return saved + [Saved(tokens * self.lora.r, self.lora.r) for _, tokens, _, _ in self._parts(x)]

    def brief(self, x: Shape, y: Shape) -> str:
        adapted = ",".join(name.rsplit(".", 1)[-1] for name in self.adapters(x))
        base = self.base.brief(x, y)
        return f"{base} lora r{self.lora.r} {adapted}".strip() if adapted else base

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        raise UsageError(f"verify does not run LoRA adapters ({self.base.type_name} {self.node_name!r}):"
                         " check the config without its lora entries")


_CLASSES: dict[type[Layer], type[Layer]] = {}


def _adapted_class(cls: type[Layer]) -> type[Layer]:
    """The base type with adapters: a subclass, so the type name, rules and checks stay the base's."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (Adapted, cls), {"__module__": __name__, "__doc__": cls.__doc__})
    return _CLASSES[cls]


def adapt(node: Node, lora: Lora, freeze: bool = False) -> Node:
    """The node with adapters on every leaf under it (a block's nested entries rebuilt; an inner
    `lora:` of its own is kept); with freeze, every entry under it frozen too."""
    layer = node.layer
    node = node._replace(trainable=False) if freeze else node
    if isinstance(layer, Adapted):
        return node
    if not type(layer).is_block():
        new = _adapted_class(type(layer)).__new__(_adapted_class(type(layer)))
        new.__dict__.update(layer.__dict__, lora=lora, node_name=node.name, base=layer)
        return node._replace(layer=new)
    values = dict(layer.arguments())
    for arg in type(layer).args:
        if arg.nested:
            value = getattr(layer, arg.name)
            if value and isinstance(value[0], list):
                values[arg.name] = [[adapt(n, lora, freeze) for n in branch] for branch in value]
            else:
                values[arg.name] = [adapt(n, lora, freeze) for n in value] if value is not None else value
    return node._replace(layer=type(layer)(**values))


def whole(network: Any, r: int, targets: str) -> Any:
    """The network as peft's get_peft_model leaves it: every weight frozen, rank-r adapters on the
    linear maps the comma-separated targets name (the command line's --lora R --lora-targets NAMES)."""
    names = tuple(t.strip() for t in targets.split(","))
    if isinstance(r, bool) or r < 1:
        raise UsageError(f"--lora must be a rank of at least 1, got {r}")
    if not all(names):
        raise UsageError(f"--lora-targets must name linear layers or projections, like q_proj,v_proj; got {targets!r}")
    spec = Lora(r, float(r), names, Location(file="--lora-targets"))
    return network._replace(nodes=[adapt(node, spec, freeze=True) for node in network.nodes])


def unmatched(entries: list[Any]) -> None:
    """SchemaError for a `lora:` whose target names no linear map under its entry."""
    found: dict[Lora, set[str]] = {}
    stack = list(entries)
    while stack:
        entry = stack.pop()
        stack.extend(entry.children)
        layer = entry.layer
        if isinstance(layer, Adapted) and not entry.sequences:
            names = found.setdefault(layer.lora, set())
            names.update(t for t in layer.lora.targets for n in layer.adapters(entry.input_shape) if matches(t, n))
    for lora, names in found.items():
        missing = [t for t in lora.targets if t not in names]
        if missing:
            where = "under this entry" if lora.loc.layer else "in the network"
            raise SchemaError(f"lora target {missing[0]!r} matches no linear layer or projection {where}",
                              lora.loc, missing[0])
