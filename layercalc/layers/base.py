"""The layer model: a Layer is its cost side and its numeric side, kept in the type registry.

Every layer type is one class (in this package) that owns its argument schema, its shape rule,
its parameter and buffer shapes, its cost (`cost.CostModel`, what the calculator reads) and its
NumPy forward/backward (`numerics.Numerics`, what verify reads). Nothing outside this package
names a layer type: the loader, the calculator, the renderers and verify go through the registry
and these methods. A layer module imports its whole vocabulary from here.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import Location
from .cost import CostModel, Saved  # noqa: F401  (Saved: the layer modules import it from here)
from .numerics import Numerics
from .schema import (  # noqa: F401  (the vocabulary layer modules import from here)
    ARG_LABELS, LAYOUTS, Arg, Bool, Choice, Float, Index, Int, IntList, Ints, LayerList, Name, Opt, Shape,
    _bad, _show, brief_arg, fmt_shape, numel,
)


class Layer(CostModel, Numerics):
    """Base of every layer type. Subclasses set type_name, args and override the rules they need."""

    def at_input(self, node: "Node", x: Shape) -> "Node":
        """The entry as it runs on input x (batch first): itself, unless what it holds is built from
        the input (a template instance's layers read the width flowing in)."""
        return node


class Node(NamedTuple):
    """One config entry: a layer instance with its name, repeat count and location."""

    layer: Layer
    name: str
    repeat: int = 1
    loc: Location = Location()
    named: bool = False  # True when the user gave the name (then it is also the path segment)
    trainable: bool = True  # False: the entry's parameters are frozen (its own `trainable: false` or a block's)
    source: str | None = None  # a top-level entry's `from:`: the named input or earlier entry it reads

    @property
    def label(self) -> str:
        """The layer as error messages name it: "conv2d 'conv1'"."""
        return f"{self.layer.type_name} {self.name!r}"


REGISTRY: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: add a layer type to the catalog under its lower-case type_name."""
    assert cls.type_name and cls.type_name == cls.type_name.lower(), cls
    assert cls.type_name not in REGISTRY, cls.type_name
    REGISTRY[cls.type_name] = cls
    return cls
