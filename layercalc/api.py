"""The Python API: load a config, analyse it; the command line is a thin layer over this."""

from __future__ import annotations

import os
from typing import Any

from .analysis import Report
from .analysis import analyse as _analyse
from .config import Network, inline_network, parse_shape
from .config import load as _load
from .layers import REGISTRY
from .layers.base import Int

Source = str | os.PathLike[str] | dict[str, Any] | Network


def load(source: Source, *, batch: int | None = None, input: Any = None) -> Network:
    """A validated Network from a path ('-' = stdin), YAML/JSON text, a dict, or a Network."""
    if not isinstance(source, Network):
        return _load(source, batch=batch, input=input)
    net = source
    if batch is not None:
        net = net._replace(batch=Int()(batch))
    if input is not None:
        net = net._replace(input=parse_shape(input, "input"))
    return net


def analyse(source: Source, *, batch: int | None = None, input: Any = None) -> Report:
    """Per-layer rows and exact totals (Report.rows(), .total, .to_dict()) for a config."""
    return _analyse(load(source, batch=batch, input=input))


def analyse_layers(specs: list[str], input: Any, batch: int | None = None) -> Report:
    """Analyse an inline network of command-line layer specs ('conv2d:out_channels=8,kernel_size=3')."""
    return _analyse(inline_network(specs, input, batch))


def catalog() -> list[dict[str, Any]]:
    """Every layer type: name, its arguments ('name' or 'name=default') and a one-line summary."""
    return [
        {"type": name, "arguments": [a.describe() for a in cls.args], "summary": cls.summary}
        for name, cls in REGISTRY.items()
    ]


def report_data(
    report: Report,
    depth: int | None = None,
    convention: str = "layercalc",
    training: bool = False,
    optimizer: str = "adam",
) -> dict[str, Any]:
    """The JSON object of summary/params/flops/shapes: rows and totals under a convention.

    Under a peer's convention, `macs` is what that tool counts (null where it counts nothing)
    and `flops` twice that; with training, rows gain `backward_macs` and a `training` total.
    """
    from .conventions import Costing, backward_macs
    from .conventions import training as training_cost

    costing = None if convention == "layercalc" else Costing(report, convention)
    backward = (lambda row: backward_macs(row, convention)) if training else None
    data = report.to_dict(depth, macs=costing.macs if costing else None, backward=backward)
    data["convention"] = convention
    if costing is not None:
        macs = costing.total()
        data["total"]["macs"], data["total"]["flops"] = macs, None if macs is None else 2 * macs
    if training:
        data["training"] = {"optimizer": optimizer, **training_cost(report, convention, optimizer)}
    return data


def compare_data(report: Report) -> dict[str, Any]:
    """MACs per op category under every convention, with totals (None = not counted)."""
    from .conventions import compare

    return compare(report)
