"""NumPy kernels shared by the layer classes: convolution and pooling on NCHW arrays."""
