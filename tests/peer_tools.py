"""The real peer tools (tests only; needs torch and the tools): what each one reports for the
torch model of a config, and what PyTorch says about training cost and activation memory."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch
from torch import nn

import torch_models

TOOLS = ("torch", "fvcore", "thop", "ptflops", "torchinfo")
logging.getLogger("fvcore").setLevel(logging.CRITICAL)


def tool_total(tool: str, config: dict[str, Any]) -> int:
    """What the tool itself reports for a fresh torch model of the config (MACs; torch: FLOPs / 2)."""
    model, shape = torch_models.build(config)
    x = torch_models.example(model, shape)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with torch.no_grad(), warnings.catch_warnings(), quiet:
        warnings.simplefilter("ignore")
        if tool == "torchinfo":
            import torchinfo

            return int(torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds)
        if tool == "fvcore":
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, (x,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
        if tool == "thop":
            import thop

            return int(thop.profile(model, inputs=(x,), verbose=False)[0])
        if tool == "ptflops":
            import ptflops

            macs, _ = ptflops.get_model_complexity_info(
                model, tuple(shape[1:]), input_constructor=lambda _: x, as_strings=False,
                backend="pytorch", print_per_layer_stat=False, verbose=False,
            )
            return int(macs)
        return torch_models.counts(model, shape)["macs"]


def training_flops(config: dict[str, Any]) -> int:
    """FlopCounterMode's FLOPs of one forward and backward pass (the input needs no gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, shape = torch_models.build(config)
    counter = FlopCounterMode(display=False)
    with counter:
        x = torch_models.example(model, shape)
        out = model(torch.randn(shape) if x.is_floating_point() else x).sum()
        if out.requires_grad:  # nothing to differentiate in a network without parameters
            out.backward()
    return counter.get_total_flops()


def activation_elements(config: dict[str, Any]) -> int:
    """Elements of every tensor a forward pass creates: each leaf module's output, and each
    residual add's, concat's, multiply's and mixture of experts' weighted sum (an nn.Sequential only passes its last child's on)."""
    model, shape = torch_models.build(config)
    total = [0]

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        total[0] += output.numel()

    # an attention module is one layer (one row), whatever runs inside it (window attention and patch
    # merging too); so is a recurrent one
    # (its nn.LSTM/GRU/RNN returns the output sequence and the final states: the row is the sequence)
    attention = (*torch_models.WHOLE, torch_models.Recurrent, torch_models.Mamba)
    inside = {id(sub) for m in model.modules() if isinstance(m, attention) for sub in m.modules() if sub is not m}
    for m in model.modules():
        if id(m) in inside:
            continue
        leaf = not list(m.children()) and not isinstance(m, nn.Sequential)  # an empty Sequential passes x on
        blocks = (torch_models.Residual, torch_models.Concat, torch_models.Multiply, torch_models.SparseMoe)
        if leaf or isinstance(m, (*blocks, *attention)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch_models.example(model, shape))
    return total[0]


def layer_reference(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Float64 forward and backward of a one-entry config in training mode (dropout off): x, dy,
    parameters in model.parameters() order, y, dx and every parameter's gradient."""
    model, shape = torch_models.build(config)
    model = model.double().train()
    for m in model.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            m.eval()
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = model(x)
    dy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y.backward(dy)
    return {
        "x": x.detach().numpy(), "dy": dy.numpy(), "y": y.detach().numpy(), "dx": x.grad.numpy(),
        "params": [p.detach().numpy() for p in params], "grads": [p.grad.numpy() for p in params],
    }
