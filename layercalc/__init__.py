"""May import: layers, kernels, render, verify; its own modules without a cycle (tests/test_imports.py).

layercalc: per-layer shapes, parameters and MACs/FLOPs of a network described in YAML,
and NumPy gradient checks of every layer."""

__version__ = "0.1.0"

from .api import analyse, analyse_layers, load  # noqa: E402

__all__ = ["__version__", "analyse", "analyse_layers", "load"]
