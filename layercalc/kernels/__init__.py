"""May import: layers.geometry; the size formulas the shape rules use, so that kernel and rule agree.

NumPy kernels shared by the layer classes: convolution and pooling on NCHW arrays, and the LSTM's time loops."""
