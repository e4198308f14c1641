"""A hand-written conv2d, the way the lecture derives it, for `layercalc verify --impl`.

    layercalc verify examples/conv_net.yaml --impl examples/my_conv2d.py

Forward:  y[n,o,i,j] = Σ_{c,p,q} k[o,c,p,q] · x_pad[n, c, i·s + p, j·s + q] + b[o]
Backward: ∇k = x ⋆ ∇y (correlation of the input with the output gradient)
          ∇b = Σ ∇y over the batch and space
          ∇x = full correlation of ∇y (with s-1 zeros inserted for stride s) with the kernel
               flipped in both axes (rot180), then the padding cropped off.
Supports stride and padding (dilation 1, groups 1). Subclassing the catalog's conv2d brings its
arguments, normalised: self.kernel (kh, kw), self.strides (sh, sw), self.pads ((top, bottom), (left, right)).
"""

import numpy as np

from layercalc.layers import REGISTRY


class MyConv2d(REGISTRY["conv2d"]):
    """conv2d with loops over kernel taps and the textbook backward pass."""

    def forward(self, x, params):
        w, b = params["weight"], params.get("bias")
        (top, bottom), (left, right) = self.pads
        xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        y = np.zeros((x.shape[0], w.shape[0], *self.out_size(xp)))
        for p, q, patch in self.taps(xp, y.shape[2:]):
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, p, q])
        if b is not None:
            y += b[None, :, None, None]
        return y, xp

    def backward(self, dy, params, xp):
        w = params["weight"]
        grads = {"weight": np.zeros_like(w)}
        for p, q, patch in self.taps(xp, dy.shape[2:]):  # ∇k = x ⋆ ∇y
            grads["weight"][:, :, p, q] = np.einsum("nchw,nohw->oc", patch, dy)
        if "bias" in params:
            grads["bias"] = self.bias_grad(dy)
        return self.input_grad(dy, w, xp.shape), grads

    def bias_grad(self, dy):
        """∇b: the output gradient summed over the batch and every position."""
        return dy.sum(axis=(0, 2, 3))

    def input_grad(self, dy, w, padded_shape):
        """∇x: full correlation of the spread-out ∇y with the flipped kernel, padding cropped."""
        kh, kw = self.kernel
        dz = self.spread(dy)
        hp, wp = padded_shape[2:]
        # "full": kh-1 zeros before; after, as many as reach the padded input's size
        dzp = np.pad(dz, ((0, 0), (0, 0), (kh - 1, hp - dz.shape[2]), (kw - 1, wp - dz.shape[3])))
        wf = self.flip(w)
        dxp = np.zeros(padded_shape)
        for p in range(kh):
            for q in range(kw):
                dxp += np.einsum("nohw,oc->nchw", dzp[:, :, p : p + hp, q : q + wp], wf[:, :, p, q])
        (top, _), (left, _) = self.pads
        return dxp[:, :, top : top + hp - sum(self.pads[0]), left : left + wp - sum(self.pads[1])]

    def flip(self, w):
        """The kernel rotated by 180 degrees."""
        return w[:, :, ::-1, ::-1]

    def spread(self, dy):
        """∇y with stride-1 zeros between its entries (positions the strided forward skipped)."""
        sh, sw = self.strides
        out = np.zeros((*dy.shape[:2], (dy.shape[2] - 1) * sh + 1, (dy.shape[3] - 1) * sw + 1))
        out[:, :, ::sh, ::sw] = dy
        return out

    def out_size(self, xp):
        """Output height and width for a padded input."""
        return tuple((n - k) // s + 1 for n, k, s in zip(xp.shape[2:], self.kernel, self.strides))

    def taps(self, xp, out_hw):
        """(p, q, the input values that kernel tap (p, q) meets at every output position)."""
        (sh, sw), (ho, wo) = self.strides, out_hw
        for p in range(self.kernel[0]):
            for q in range(self.kernel[1]):
                yield p, q, xp[:, :, p : p + sh * (ho - 1) + 1 : sh, q : q + sw * (wo - 1) + 1 : sw]
