"""linear whose backward raises: a user's bug, reported as a failed check of that layer (exit 1)."""

from layercalc.layers import REGISTRY


class RaisingLinear(REGISTRY["linear"]):
    def backward(self, dy, params, cache):
        raise ValueError("shapes (3,4) and (5,) not aligned")
