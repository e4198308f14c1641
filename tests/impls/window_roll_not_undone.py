"""windowattention whose backward cuts the gradient into windows without the forward's cyclic roll."""

from layercalc.layers import REGISTRY


class UnrolledWindowAttention(REGISTRY["windowattention"]):
    def backward(self, dy, params, cache):
        # the bug: the backward forgets the shift (no roll on the way in or out)
        self.shift = lambda shape: (0, 0)
        try:
            return super().backward(dy, params, cache)
        finally:
            del self.shift
