"""batchnorm2d whose input gradient forgets that the batch mean and variance depend on x."""

from layercalc.layers import REGISTRY


class NoMeanTerms(REGISTRY["batchnorm2d"]):
    def backward(self, dy, params, cache):
        xhat, inv_std, shape = cache
        _, grads = super().backward(dy, params, cache)
        dxhat = dy * params["weight"].reshape(1, -1, 1, 1)
        return dxhat * inv_std.reshape(1, -1, 1, 1), grads
