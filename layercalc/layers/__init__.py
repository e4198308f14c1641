"""The layer catalog: importing this package registers every layer type (in catalog order)."""

from . import linear, conv, pool, norm, activation, reshape, tokens, blocks  # noqa: F401,I001  (registration order)
from .base import REGISTRY, Arg, Layer, Node, Shape, fmt_shape, numel

__all__ = ["REGISTRY", "Arg", "Layer", "Node", "Shape", "fmt_shape", "numel"]
