"""attention whose softmax backward forgets the sum term: ds = a ⊙ da instead of a ⊙ (da - Σ da·a)."""

from layercalc.layers import REGISTRY


class NoSumTermAttention(REGISTRY["attention"]):
    def attend_backward(self, do, cache):
        q, k, v, _, a, scale = cache
        dv = a.swapaxes(-1, -2) @ do
        da = do @ v.swapaxes(-1, -2)
        ds = a * da  # the bug: softmax's Jacobian is diag(a) - a aᵀ, not diag(a)
        return (ds @ k) * scale, (ds.swapaxes(-1, -2) @ q) * scale, dv
