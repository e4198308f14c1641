"""mamba whose reverse scan forgets that h_t also feeds h_{t+1}: dL/dh_t gets only what reaches it
through y_t, not decay_{t+1} · dL/dh_{t+1}, so no gradient flows back along the state."""

import numpy as np

from layercalc.layers import REGISTRY


class MambaScanNoCarry(REGISTRY["mamba"]):
    @staticmethod
    def scan_back(dh_out, decay):
        return np.array(dh_out)  # the bug: should add decay_{t+1} · dL/dh_{t+1}, step by step in reverse
