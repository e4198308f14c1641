"""attention whose backward recomputes the softmax without the causal mask."""

import numpy as np

from layercalc.layers import REGISTRY


class UnmaskedBackwardAttention(REGISTRY["attention"]):
    def attend_backward(self, do, cache):
        q, k, v, s, _, scale = cache
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)  # the bug: every key, future ones too
        dv = a.swapaxes(-1, -2) @ do
        da = do @ v.swapaxes(-1, -2)
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
        return (ds @ k) * scale, (ds.swapaxes(-1, -2) @ q) * scale, dv
