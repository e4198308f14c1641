"""lstm whose backward drops the forget gate's contribution to the cell state's gradient:
dL/dc_{t-1} should be dL/dc_t · f_t, here it is 0, so no gradient flows along the cell state."""

import numpy as np

from layercalc.layers import REGISTRY


class LSTMNoForgetCarry(REGISTRY["lstm"]):
    def step_back(self, dh, dc, cache, p, grads):
        h, c, i, f, g, o, tc, m = cache
        if self.proj_size:
            grads["weight_hr"] += dh.T @ m
            dm = dh @ p["weight_hr"]
        else:
            dm = dh
        do = dm * tc
        dc = dc + dm * o * (1.0 - tc * tc)
        di, df, dg = dc * g, dc * c, dc * i
        dc_prev = np.zeros_like(dc)  # the bug: should be dc * f
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
        self.hh_grads(da, h, grads)
        return da, da @ p["weight_hh"], dc_prev
