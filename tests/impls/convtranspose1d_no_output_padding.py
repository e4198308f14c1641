"""convtranspose1d whose gradients ignore output_padding: computed as if the output had no extra
tail, i.e. with the last output_padding entries of ∇y dropped (they do reach x when padding > 0)."""

from layercalc.layers import REGISTRY
from layercalc.layers.geometry import per_dim


class NoOutputPadding(REGISTRY["convtranspose1d"]):
    def backward(self, dy, params, cache):
        (op,) = per_dim(self.output_padding, 1)
        if op:
            dy = dy.copy()
            dy[..., -op:] = 0.0
        return super().backward(dy, params, cache)
