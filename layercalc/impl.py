"""Loading a user's own NumPy implementation of a layer type, for `verify --impl`.

The interface (see docs/verify.md): a class with `type_name` naming a catalog type and the methods
`forward(self, x, params) -> (y, cache)` and `backward(self, dy, params, cache) -> (dx, grads)`.
A plain class will do: verify gives it the catalog class's arguments and their normalised forms
(self.kernel, self.strides, self.pads, ...) as if it subclassed `REGISTRY["conv2d"]`; its own
forward and backward (and any other method it defines) come first. Its own __init__, if any,
then runs with the layer's arguments as keywords, as PyTorch builds a module (execution.build).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any

from .errors import UsageError
from .layers import REGISTRY
from .verify.execution import raised


def load_impl(spec: str) -> type:
    """The implementation class named by 'FILE.py', 'FILE.py:Class' or 'module:Class'."""
    target, _, attr = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    try:
        if target.endswith(".py") or os.path.exists(target):
            if os.path.isdir(target):
                raise UsageError(f"--impl {spec}: is a directory, not a Python file")
            if os.path.exists(target) and not os.path.isfile(target):  # /dev/null, a pipe
                raise UsageError(f"--impl {spec}: not a regular file, so not a Python file")
            if not os.path.isfile(target):
                raise UsageError(f"--impl {spec}: no such file")
            name = f"layercalc_impl_{abs(hash(os.path.abspath(target)))}"
            module_spec = importlib.util.spec_from_file_location(name, target)
            if module_spec is None or module_spec.loader is None:
                raise UsageError(f"--impl {spec}: not a Python file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            # as when running a script: modules next to the file can be imported
            folder = os.path.dirname(os.path.abspath(target))
            if folder not in sys.path:
                sys.path.insert(0, folder)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except (UsageError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # the user's code failed to import, or ended the process: one line, exit 2
        # (sys.exit while importing leaves no layer to check: the file cannot be used, like a syntax error)
        raise UsageError(f"--impl {spec}: importing it {'called' if isinstance(exc, SystemExit) else 'failed:'} "
                         f"{raised(exc)}") from None
    return _pick(module, attr, spec)


def _pick(module: Any, attr: str, spec: str) -> type:
    if attr:
        cls = getattr(module, attr, None)
        if cls is None:
            raise UsageError(f"--impl {spec}: no attribute '{attr}'")
        return _checked(cls, spec)
    found = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and getattr(obj, "type_name", None) in REGISTRY
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise UsageError(f"--impl {spec}: expected one layer class (with type_name), found {names}; name it as FILE.py:Class")
    return _checked(found[0], spec)


def _checked(cls: Any, spec: str) -> type:
    type_name = getattr(cls, "type_name", None)
    if type_name not in REGISTRY:
        raise UsageError(f"--impl {spec}: type_name {type_name!r} is not a layer type (see 'layercalc layers')")
    for method in ("forward", "backward"):
        if not callable(getattr(cls, method, None)):
            raise UsageError(f"--impl {spec}: {cls.__name__} has no {method}() method")
    catalog = REGISTRY[type_name]
    if catalog.is_block():
        raise UsageError(f"--impl {spec}: blocks ({type_name}) are built from their children; implement a leaf type")
    if not issubclass(cls, catalog):
        # a plain class: the catalog's class supplies everything but its forward and backward
        # (the arguments and their normalised forms, the shape rules, the kinks verify avoids)
        cls = type(cls.__name__, (cls, _Built, catalog), {"__module__": cls.__module__, "__doc__": cls.__doc__})
    return cls


class _Built:
    """Where a plain class's super().__init__() lands (as nn.Module's would): nothing left to do,
    the object holds the catalog layer's attributes already (the catalog's __init__ would reset them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass
