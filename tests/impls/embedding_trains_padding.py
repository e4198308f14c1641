"""embedding whose weight gradient forgets to keep the padding row untrained."""

from layercalc.lazy import np
from layercalc.layers import REGISTRY


class TrainsPadding(REGISTRY["embedding"]):
    def backward(self, dy, params, ids):
        dw = np.zeros_like(params["weight"])
        np.add.at(dw, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
        return None, {"weight": dw}
