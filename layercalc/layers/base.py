"""The layer model: a Layer is its cost side and its numeric side, kept in the type registry.

Every layer type is one class (in this package) that owns its argument schema, its shape rule,
its parameter and buffer shapes, its cost (`cost.CostModel`, what the calculator reads) and its
NumPy forward/backward (`numerics.Numerics`, what verify reads). Nothing outside this package
names a layer type: the loader, the calculator, the renderers and verify go through the registry
and these methods. A layer module imports its whole vocabulary from here.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
import importlib
from collections.abc import Iterator, MutableMapping
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


REGISTERED: dict[str, type[Layer]] = {}  # every layer type whose module has been imported, as registered


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: add a layer type to the catalog under its lower-case type_name."""
    assert cls.type_name and cls.type_name == cls.type_name.lower(), cls
    assert cls.type_name not in REGISTERED, cls.type_name
    REGISTERED[cls.type_name] = cls
    return cls


class Catalog(MutableMapping[str, type[Layer]]):
    """Type name -> layer class, in catalog order. Each type's module (its family) is imported on the
    first lookup of a type it defines, so a run loads only the families its config names; listing
    the names needs no import. Types registered outside the families (a test's) follow them."""

    def __init__(self, package: str, families: dict[str, tuple[str, ...]]) -> None:
        self._package = package
        # type name -> the module defining it, in catalog order
        self._module = {name: family for family, names in families.items() for name in names}

    def __getitem__(self, name: str) -> type[Layer]:
        if name not in REGISTERED and name in self._module:
            importlib.import_module(f"{self._package}.{self._module[name]}")
            assert name in REGISTERED, f"{self._package}.{self._module[name]} does not register {name!r}"
        return REGISTERED[name]

    def __contains__(self, name: object) -> bool:
        return name in self._module or name in REGISTERED

    def __iter__(self) -> Iterator[str]:
        yield from self._module
        yield from (name for name in REGISTERED if name not in self._module)

    def __len__(self) -> int:
        return len(self._module) + sum(name not in self._module for name in REGISTERED)

    def __setitem__(self, name: str, cls: type[Layer]) -> None:
        REGISTERED[name] = cls

    def __delitem__(self, name: str) -> None:
        del REGISTERED[name]
