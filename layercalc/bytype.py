"""Totals by layer type (fvcore's `by_operator`): how much of a network is conv, linear, attention, ...

Only layers count (the leaves of the tree), each as many times as it runs, so nothing is counted
twice: a block's numbers are its children's. A block type gets a row of its own only where the
block itself adds a count (its own peer cost or backward MACs), which no block type does today.
Under a peer convention each type's MACs are that tool's over the type's layers; with training,
the backward MACs of each layer follow autograd (no dL/dx before the first layer with parameters).
"""

from __future__ import annotations

from typing import Any

from .analysis import Entry, Report
from .layers.peers import tally


class _Type:
    """What accumulates for one layer type."""

    def __init__(self) -> None:
        self.count = self.params = self.buffers = self.backward = self.extra = 0
        self.macs = 0  # layercalc's own count
        self.values: list[Any] = []  # a peer convention's values (int, ptflops pair or None)


def _times(value: Any, n: int) -> Any:
    """A peer value (int, ptflops pair or None) for n identical runs."""
    if value is None or n == 1:
        return value
    return (value[0] * n, value[1] * n) if isinstance(value, tuple) else value * n


def by_type(report: Report, convention: str = "layercalc", training: bool = False) -> list[dict[str, Any]]:
    """One row per layer type in order of first appearance: count, params, buffers, MACs, FLOPs
    (under `convention`; None = that tool counts none of them), and with training backward and
    training MACs. The rows sum to the report's totals."""
    types: dict[str, _Type] = {}

    def add(entry: Entry, grad: bool, n: int, leaf: bool) -> None:
        layer = entry.layer
        x, y = entry.input_shape, entry.output_shape
        own = [v[convention] for _, v in layer.peer_costs(x, y)] if layer is not None else []
        backward = layer.backward_macs(x, y, grad, convention) if layer is not None and training else 0
        extra = layer.training_forward_extra(x, y, convention) if layer is not None and training else 0
        counted = [v for v in own if v is not None]
        if not leaf and not counted and not backward and not extra:
            return  # a block that adds nothing of its own: its children carry its numbers
        t = types.setdefault(entry.type, _Type())
        t.count += n
        if leaf:
            t.params += entry.params * n
            t.buffers += entry.buffers * n
            t.macs += entry.macs * n
        t.values += [_times(v, n) for v in own]
        t.backward += backward * n
        t.extra += extra * n

    def visit(entry: Entry, grad: bool, n: int) -> None:
        leaf = not entry.sequences
        if entry.layer is not None:
            add(entry, grad, n, leaf)
        for seq in entry.runs(grad):
            for run in seq:
                visit(run.entry, run.grad, n)
                if run.times > 1:  # the later runs of a repeat's last copy: their input may need dL/dx
                    visit(run.entry, run.later_grad, n * (run.times - 1))

    grad = False
    for entry in report.entries:  # top-level entries run once each, in order
        visit(entry, grad, 1)
        grad = grad or entry.params > 0

    batch = report.network.batch
    rows = []
    for name, t in types.items():
        macs = t.macs if convention == "layercalc" else tally(t.values, convention, batch)
        row: dict[str, Any] = {
            "type": name, "count": t.count, "params": t.params, "buffers": t.buffers,
            "macs": macs, "flops": None if macs is None else 2 * macs,
        }
        if training:
            row["backward_macs"] = t.backward
            row["training_macs"] = (macs or 0) + t.extra + t.backward
        rows.append(row)
    return rows
