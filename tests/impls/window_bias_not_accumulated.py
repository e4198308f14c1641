"""windowattention whose relative bias table gradient keeps one pair per offset instead of summing them."""

from layercalc.layers import REGISTRY
from layercalc.lazy import np


class OverwritingWindowAttention(REGISTRY["windowattention"]):
    def bias_grad(self, ds, table):
        grad = np.zeros_like(table)
        # the bug: fancy-index assignment writes each repeated row once (the last pair wins)
        grad[self.relative_index()] = ds.sum(axis=0).reshape(ds.shape[1], -1).T
        return grad
