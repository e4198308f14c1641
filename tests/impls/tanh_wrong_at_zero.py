"""tanh whose backward drops the gradient where the input is exactly 0 (after a ReLU, half the
network's inputs; never in a fresh random input): a failure that depends on the input."""

import numpy as np


class TanhWrongAtZero:
    type_name = "tanh"

    def forward(self, x, params):
        y = np.tanh(x)
        return y, (x, y)

    def backward(self, dy, params, cache):
        x, y = cache
        return np.where(x == 0, 0.0, dy * (1 - y * y)), {}
