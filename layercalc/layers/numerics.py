"""The numeric side of a layer type: what verify reads.

Its NumPy reference (random parameters, forward, backward, a block's merge and split), where the
function is not differentiable, extra algebraic identities, and the memory and Python steps a
check of it takes per element. Arrays are float64 (or float32), batch first. A leaf type writes
`forward` and `backward`; every other method has a default that fits most layers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

from ..lazy import np
from .schema import Shape, numel


class Numerics:
    """The NumPy reference of a layer type and verify's model of its cost in memory and time."""

    kinks: ClassVar[tuple[float, ...]] = ()  # inputs where f is not differentiable; verify avoids them
    # True when the output picks among the inputs (a max): f is not differentiable where two inputs
    # tie, so verify draws the inputs of its own check distinct, a margin apart, and steps within it
    selects: ClassVar[bool] = False

    # from the cost side (a layer is both): the name in messages and the shapes to draw parameters of
    type_name: ClassVar[str]
    param_shapes: Callable[[Shape], dict[str, Shape]]

    def init_params(self, x: Shape, rng: Any) -> dict[str, Any]:
        """Random parameters of the shapes param_shapes(x): fan-in scaled weights, small biases."""
        params = {}
        for name, shape in self.param_shapes(x).items():
            if len(shape) >= 2:  # a weight matrix or kernel: keep activations O(1) (unit variance per
                # input, uniform as PyTorch's default init, and drawn several times faster than normals)
                params[name] = unit_uniform(rng, numel(shape)).reshape(shape) * (1.0 / math.sqrt(numel(shape[1:])))
            elif name == "weight":  # a normalisation scale: around 1
                params[name] = 1.0 + 0.1 * rng.standard_normal(shape)
            else:
                params[name] = 0.1 * rng.standard_normal(shape)
        return params

    def forward(self, x: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        """y and a cache for backward (leaves only)."""
        raise NotImplementedError(f"{self.type_name} has no NumPy forward")

    def backward(self, dy: Any, params: dict[str, Any], cache: Any) -> tuple[Any, dict[str, Any]]:
        """(dL/dx, {param name: dL/dparam}) from dL/dy and forward's cache (leaves only)."""
        raise NotImplementedError(f"{self.type_name} has no NumPy backward")

    def identities(self, x: Any, params: dict[str, Any], rng: Any) -> list[tuple[str, float, float]]:
        """Extra algebraic checks of this layer type: (what, error, tolerance) each."""
        return []

    def merge(self, outs: list[Any]) -> Any:
        """A block's output array from its child sequences' outputs."""
        raise NotImplementedError

    def split(self, dy: Any, outs: list[Any]) -> list[Any]:
        """The gradient reaching each child sequence's output from the block's dL/dy."""
        raise NotImplementedError

    def routed_rows(self, k: int, outs: list[Any]) -> Any:
        """The rows (along the first axis) of the block's input, as child sequence k reads it, that
        the sequence runs on, given the outputs of the sequences before it (full size): an index
        array, or None for every row. The sequence's output is put back at those rows, zeros
        elsewhere, before merge; split's gradient reaches it at those rows alone."""
        return None

    def frozen_rows(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Rows (along the first axis) of parameters whose gradient is zero by the layer's
        definition, whatever the loss (never trained): {param name: (rows, why)}. verify leaves them
        out of the numeric comparison and checks that their analytic gradient is exactly zero."""
        return {}

    def needed_ids(self) -> tuple[int, ...]:
        """Token ids (below input_ids()) that a random input of ids must contain for a check to
        exercise them (a padding id); () for most layers."""
        return ()

    # -- what a check costs, for verify's plan --
    def python_steps(self, x: Shape) -> int:
        """Steps of Python the NumPy forward takes on input x, each a few small array operations (a
        recurrent layer's time steps, for each stacked layer and direction): verify's estimate of
        a check's time counts them, as array work does not show them. 1 by default."""
        return 1

    def work_elements(self, x: Shape) -> int:
        """Elements of the arrays the NumPy forward keeps for backward and the backward's largest
        temporaries, beyond the input and output (attention's T×T matrices per head, a recurrent
        layer's gates at every step): verify's memory estimate adds them. 0 by default."""
        return 0


def unit_uniform(rng: Any, n: int) -> Any:
    """n float64 numbers uniform on ±√3 (unit variance). A generator with a noise pool (verify's,
    `rng.unit`) hands out a read-only view of it; any other NumPy Generator draws them afresh."""
    unit = getattr(rng, "unit", None)
    return unit(n) if unit is not None else fresh_uniform(rng, n)


def fresh_uniform(rng: Any, n: int, out: Any = None) -> Any:
    """n float64 numbers uniform on ±√3, drawn from rng into out (n elements, float64) when given,
    else into a new writable array: as float32 (twice as fast, and 24 random bits are plenty here),
    widened and shifted in one pass, scaled in place."""
    u = np.subtract(rng.random(n, dtype="float32"), 0.5, out=out, dtype="float64")
    u *= 2 * math.sqrt(3.0)
    return u


STREAM_PREFIX = "stream:"  # how verify hands a layer another stream it reads: a reserved key among its parameters


def stream_key(name: str) -> str:
    """The key under which forward finds the stream `name` (cross-attention's keys and values) in
    its params, and under which backward returns that stream's gradient."""
    return STREAM_PREFIX + name
