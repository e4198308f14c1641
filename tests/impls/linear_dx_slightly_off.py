"""linear whose input gradient is 0.01% too large: caught by the default tolerances (rtol 1e-5), not by rtol 1e-3."""

from layercalc.layers import REGISTRY


class SlightlyOffLinear(REGISTRY["linear"]):
    def backward(self, dy, params, cache):
        dx, grads = super().backward(dy, params, cache)
        return dx * (1 + 1e-4), grads
