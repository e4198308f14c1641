"""May import: errors, kernels, lazy.

The layer catalog: importing this package registers every layer type (in catalog order)."""

from . import linear, conv, pool, norm, activation, reshape, tokens, recurrent, blocks, attention  # noqa: F401,I001  (registration order)
from . import resampling  # noqa: F401,I001
from . import window  # noqa: F401,I001
from . import affine  # noqa: F401,I001
from . import ssm  # noqa: F401,I001
from . import experts  # noqa: F401,I001
from .base import REGISTRY, Arg, Layer, Node, Saved, Shape, fmt_shape, numel

__all__ = ["REGISTRY", "Arg", "Layer", "Node", "Saved", "Shape", "fmt_shape", "numel"]
