"""maxpool2d that, on its first batch-2 input, sends its own process the signal named by the
environment's LAYERCALC_TEST_SIGNAL (INT or TERM): a Ctrl-C or SIGTERM that lands once the
network's pass is done and while the batch-2 copies run, on every machine, however fast."""

import os
import signal

from layercalc.layers import REGISTRY


class SignalsAtBatch2(REGISTRY["maxpool2d"]):
    def forward(self, x, params):
        if x.shape[0] == 2:
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["LAYERCALC_TEST_SIGNAL"]))
        return super().forward(x, params)
