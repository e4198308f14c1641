"""Implementations that misbehave rather than compute wrongly: each is a failed check of its layer
(exit 1, the layer and the problem named), never a pass, a silent exit or an internal error.
Pick one with FILE.py:Class."""

import sys

import numpy as np

from layercalc.layers import REGISTRY


class Tanh:
    type_name = "tanh"

    def forward(self, x, params):
        y = np.tanh(x)
        return y, y

    def backward(self, dy, params, y):
        return dy * (1 - y * y), {}


class ExitInForward(Tanh):
    def forward(self, x, params):
        sys.exit()


class ExitZeroInForward(Tanh):
    def forward(self, x, params):
        sys.exit(0)


class ExitInBackward(Tanh):
    def backward(self, dy, params, y):
        sys.exit()


class ExitThreeInBackward(Tanh):
    def backward(self, dy, params, y):
        sys.exit(3)


class GeneratorExitInForward(Tanh):
    def forward(self, x, params):
        raise GeneratorExit


class ReturnsList(Tanh):
    def forward(self, x, params):
        y = np.tanh(x)
        return [row for row in y]


class ReturnsNone(Tanh):
    def forward(self, x, params):
        np.tanh(x)


class ReturnsBareArray(Tanh):
    def forward(self, x, params):
        return np.tanh(x)


class DxWrongShape(REGISTRY["linear"]):
    def backward(self, dy, params, cache):
        dx, grads = super().backward(dy, params, cache)
        return dx[:, :-1], grads


class GradsNone(REGISTRY["linear"]):
    def backward(self, dy, params, cache):
        dx, _ = super().backward(dy, params, cache)
        return dx, None


class RaisesControlCharacters(Tanh):
    def backward(self, dy, params, y):
        raise ValueError("bad \x1b[31mred\x1b[0m\nsecond line\ttab")


class ReadOnlyIdentity:
    """A correct identity whose output and input gradient are read-only views (np.broadcast_to):
    verify must not write into arrays it did not allocate, so this passes."""

    type_name = "identity"

    def forward(self, x, params):
        return np.broadcast_to(x, x.shape), None

    def backward(self, dy, params, cache):
        return np.broadcast_to(dy, dy.shape), {}


class LinearWithInit:
    """A linear whose state is set in __init__, as a PyTorch module does: verify calls it with the
    layer's arguments its signature names (tied_to, which nn.Linear lacks, is left out)."""

    type_name = "linear"

    def __init__(self, in_features=None, out_features=None, bias=True):
        super().__init__()
        self.scale = 1.0
        self.with_bias = bias

    def forward(self, x, params):
        y = self.scale * x @ params["weight"].T + (params["bias"] if self.with_bias else 0)
        return y, x

    def backward(self, dy, params, x):
        grads = {"weight": dy.T @ x}
        if self.with_bias:
            grads["bias"] = dy.sum(axis=0)
        return dy @ params["weight"], grads


class InitTakesNothing(LinearWithInit):
    def __init__(self):
        self.scale = 1.0
        self.with_bias = True


class InitNeedsDevice(LinearWithInit):
    def __init__(self, in_features, out_features, bias, device):
        super().__init__(in_features, out_features, bias)
