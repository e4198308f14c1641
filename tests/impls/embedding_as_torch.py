"""embedding written exactly as nn.Embedding: the lookup reads the padding row (zero at
construction), whose gradient is zero by definition (padding_idx means "never updated")."""

import numpy as np


class TorchEmbedding:
    type_name = "embedding"

    def forward(self, x, params):
        ids = np.asarray(x).astype(np.int64)
        return params["weight"][ids], ids  # F.embedding: the padding row is read like any other

    def backward(self, dy, params, ids):
        dw = np.zeros_like(params["weight"])
        np.add.at(dw, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
        if self.padding_idx is not None:
            dw[self.padding_idx] = 0.0  # nn.Embedding: the padding row is never updated
        return None, {"weight": dw}
