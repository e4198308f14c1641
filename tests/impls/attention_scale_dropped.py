"""attention whose backward drops the 1/sqrt(d) scale of the scores."""

from layercalc.layers import REGISTRY


class UnscaledBackwardAttention(REGISTRY["attention"]):
    def attend_backward(self, do, cache):
        q, k, v, _, a, scale = cache
        dv = a.swapaxes(-1, -2) @ do
        da = do @ v.swapaxes(-1, -2)
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
        return ds @ k, ds.swapaxes(-1, -2) @ q, dv  # the bug: s = q kᵀ / √d, so both need the 1/√d
