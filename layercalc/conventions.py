"""Peer conventions and training cost on top of an analysed network (pure integer arithmetic).

- `Costing(report, convention)`: every row's MACs as torchinfo, fvcore, thop, ptflops or
  FlopCounterMode count them (from each layer's own `peer_costs`), and the totals;
- `compare(report)`: one row per op category, one column per convention;
- `training(report, convention, optimizer)`: backward MACs (no dL/dx before the first layer
  with trainable parameters, as autograd; no dL/dW of frozen layers) and the memory a training
  step holds (gradients and optimizer state for trainable parameters only).

Each count is a fold over the report's run table (one row per place an entry runs, with how many
times and whether its input needs a gradient): this module has no walk or gradient rule of its own.
"""

from __future__ import annotations

from typing import Any, Iterator

from .analysis import Entry, Execution, Report
from .layers.peers import CATEGORIES, CHOICES, CONVENTIONS, tally

# Every optimizer layercalc knows, by name, with its state tensors per parameter: the one list the
# API, the CLI and the training cost read.
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}
DEFAULT_OPTIMIZER = "adam"


def repeated(value: Any, n: int) -> Any:
    """A peer value (int, ptflops pair or None) for n identical runs."""
    if value is None or n == 1:
        return value
    return (value[0] * n, value[1] * n) if isinstance(value, tuple) else value * n


def _own(entry: Entry) -> list[tuple[str, dict[str, Any]]]:
    return entry.layer.peer_costs(entry.input_shape, entry.output_shape) if entry.layer is not None else []


def own_values(row: Execution, convention: str) -> list[Any]:
    """The convention's values of the row's own layer (not its children's), for all its runs."""
    return [repeated(v[convention], row.copies) for _, v in _own(row.entry)]


def leaf_values(report: Report) -> Iterator[tuple[str, str, Any]]:
    """(category, convention, value) of every layer and block in execution order, times its runs."""
    for row in report.run_table:
        for category, values in _own(row.entry):
            for convention, value in values.items():
                yield category, convention, repeated(value, row.copies)


class Costing:
    """MACs of every row (its subtree) and of the network under one convention."""

    def __init__(self, report: Report, convention: str) -> None:
        if convention not in CHOICES:
            raise ValueError(convention)
        self.report, self.convention = report, convention
        self.batch = report.network.batch

    def _values(self, under: Execution | None = None) -> list[Any]:
        """The values of every run below `under` (all runs of the network when None)."""
        return [v for row in self.report.executions(under) for v in own_values(row, self.convention)]

    def macs(self, row: Execution) -> int | None:
        """A row's MACs (its entry with everything below, times its copies); None when the tool counts none of it."""
        return tally(self._values(row), self.convention, self.batch)

    def total(self) -> int:
        """The network's MACs under this convention; 0 when the tool counts none of its layers, as
        the tool itself prints (FlopCounterMode's total of an uncounted network is 0)."""
        total = tally(self._values(), self.convention, self.batch)
        return 0 if total is None else total

    def counts_nothing(self) -> bool:
        """True when the tool counts none of the network's layers (its total is then 0)."""
        return all(v is None for v in self._values())


def _fold(values: list[Any]) -> Any:
    if isinstance(values[0], tuple):
        return (sum(v[0] for v in values), sum(v[1] for v in values))
    return sum(values)


def compare(report: Report) -> dict[str, Any]:
    """Per op category and convention: the MACs counted (None = not counted), and totals.

    The categories are open: the usual ones first in their usual order, then any other a layer
    declares, in the order met; every counted value lands in exactly one row.
    """
    buckets: dict[str, dict[str, list[Any]]] = {}
    for category, convention, value in leaf_values(report):
        if convention in CONVENTIONS:  # the tools and layercalc's own; a variant is asked for by name
            buckets.setdefault(category, {c: [] for c in CONVENTIONS})[convention].append(value)
    batch = report.network.batch
    order = [c for c in CATEGORIES if c in buckets] + [c for c in buckets if c not in CATEGORIES]
    rows = [{"category": cat, **{c: tally(buckets[cat][c], c, batch) for c in CONVENTIONS}} for cat in order]
    totals = {c: tally([v for cat in order for v in buckets[cat][c]], c, batch) for c in CONVENTIONS}
    return {"name": report.network.name, "batch": batch, "unit": "MACs", "rows": rows, "total": totals}


def training(report: Report, convention: str = "layercalc", optimizer: str = DEFAULT_OPTIMIZER) -> dict[str, int]:
    """Backward MACs (dL/dx and dL/dW of conv and linear) and a training step's memory in bytes.

    Frozen parameters get no gradient and no optimizer state; `estimated_total_bytes` adds the
    input to the step's memory (params, gradients, optimizer state and kept activations).
    """
    rows = report.run_table
    backward = sum(row.copies * own_backward(row.entry, row.grad, convention) for row in rows)
    # a forward with autograd recording may count more than the inference one (fused fast paths off)
    forward = Costing(report, convention).total() + sum(
        row.copies * forward_extra(row.entry, row.grad, convention) for row in rows
    )
    total = report.total
    size = report.dtype_bytes
    params, trainable = total["params"], total["trainable_params"]
    kept = total["activation_bytes"]  # every layer's output, kept for the backward pass
    states = OPTIMIZER_STATES[optimizer]
    step = params * size + (1 + states) * trainable * size + kept
    return {
        "forward_macs": forward,
        "backward_macs": backward,
        "training_macs": forward + backward,
        "training_flops": 2 * (forward + backward),
        "param_bytes": params * size,
        "gradient_bytes": trainable * size,
        "optimizer_bytes": states * trainable * size,
        "activation_bytes": kept,
        "training_bytes": step,
        "input_bytes": total["input_bytes"],
        "estimated_total_bytes": total["input_bytes"] + step,
    }


def forward_extra(entry: Entry, grad: bool, convention: str) -> int:
    """MACs the convention counts in addition when the entry's own layer runs with autograd recording.

    Autograd records a layer only when its input needs a gradient or it has trainable
    parameters; a frozen layer before the first trainable one runs as at inference.
    """
    layer = entry.layer
    if layer is None or not (grad or entry.trainable_params > 0):
        return 0
    return layer.training_forward_extra(entry.input_shape, entry.output_shape, convention)


def own_backward(entry: Entry, grad: bool, convention: str) -> int:
    """Backward MACs of the entry's own layer (not its children's), its input needing dL/dx if grad.

    No dL/dx before the first trainable parameter; a frozen layer computes no dL/dW, only the
    gradient flowing through it to earlier trainable ones.
    """
    layer = entry.layer
    if layer is None:
        return 0
    x, y = entry.input_shape, entry.output_shape
    if entry.trainable:
        return layer.backward_macs(x, y, grad, convention)
    # frozen, downstream of a trainable parameter (or with adapters that train): the gradient flowing
    # through, and the adapters' own
    if grad or entry.trainable_params > 0:
        through = layer.backward_macs(x, y, grad, convention)
        return through - layer.weight_grad_macs(x, y, convention)
    return 0


def backward_macs(report: Report, row: Execution, convention: str) -> int:
    """Backward MACs of a row: its entry with everything below, over every copy it stands for."""
    return sum(x.copies * own_backward(x.entry, x.grad, convention) for x in report.executions(row))
