"""May import: errors, kernels, lazy.

The layer catalog: REGISTRY names every layer type (in catalog order); a type's module is imported
on the first lookup of a type it defines."""

from .base import Arg, Catalog, Layer, Node, Saved, Shape, fmt_shape, numel

# each family module and the types it registers, in catalog order (as `layercalc layers` lists them);
# tests/test_layer_checklist.py checks the table against what every module of the package registers
FAMILIES: dict[str, tuple[str, ...]] = {
    "linear": ("linear",),
    "conv": ("conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d"),
    "pool": ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "maxpool3d", "avgpool3d", "adaptiveavgpool1d",
             "adaptiveavgpool2d", "adaptiveavgpool3d", "adaptivemaxpool1d", "adaptivemaxpool2d"),
    "norm": ("batchnorm1d", "batchnorm2d", "batchnorm3d", "layernorm", "groupnorm", "rmsnorm", "layernorm2d"),
    "activation": ("relu", "relu6", "leakyrelu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                   "hardsigmoid", "identity", "softmax", "softplus"),
    "reshape": ("dropout", "dropout2d", "flatten", "transpose", "permute", "reshape", "select", "narrow", "mean"),
    "tokens": ("embedding", "posembedding", "clstoken"),
    "recurrent": ("lstm", "gru", "rnn"),
    "blocks": ("residual", "concat", "multiply", "sequential"),
    "attention": ("multiheadattention", "attention", "transformerencoderlayer"),
    "resampling": ("upsample", "pixelshuffle"),
    "window": ("windowattention", "patchmerging"),
    "affine": ("scale", "shift"),
    "ssm": ("mamba",),
    "experts": ("moe",),
}
REGISTRY = Catalog(__name__, FAMILIES)

__all__ = ["FAMILIES", "REGISTRY", "Arg", "Layer", "Node", "Saved", "Shape", "fmt_shape", "numel"]
