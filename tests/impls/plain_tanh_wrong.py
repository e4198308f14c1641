"""A plain-class tanh whose derivative forgets the square: 1 - y instead of 1 - y²."""

import numpy as np


class PlainWrongTanh:
    type_name = "tanh"

    def forward(self, x, params):
        y = np.tanh(x)
        return y, y

    def backward(self, dy, params, y):
        return dy * (1 - y), {}
