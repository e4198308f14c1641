"""linear whose input gradient has the wrong sign."""

from layercalc.layers import REGISTRY


class SignFlippedLinear(REGISTRY["linear"]):
    def backward(self, dy, params, cache):
        dx, grads = super().backward(dy, params, cache)
        return -dx, grads
