"""convtranspose2d whose input gradient lands one pixel to the right."""

import numpy as np

from layercalc.layers import REGISTRY


class OffByOne(REGISTRY["convtranspose2d"]):
    def backward(self, dy, params, cache):
        dx, grads = super().backward(dy, params, cache)
        return np.roll(dx, 1, axis=-1), grads
