"""Totals by layer type (fvcore's `by_operator`): how much of a network is conv, linear, attention, ...

Only layers count (the leaves of the tree), each as many times as it runs, so nothing is counted
twice: a block's numbers are its children's. A block type gets a row of its own only where the
block itself adds a count (its own peer cost or backward MACs), which no block type does today.
Under a peer convention each type's MACs are that tool's over the type's layers; with training,
each layer's backward MACs are the totals' own (`conventions.own_backward` over the report's run
table): this module only groups the table's rows, it has no gradient rule of its own.
"""

from __future__ import annotations

from typing import Any

from .analysis import Execution, Report
from .conventions import forward_extra, own_backward, repeated
from .layers import numel
from .layers.peers import tally


class _Type:
    """What accumulates for one layer type."""

    def __init__(self) -> None:
        self.count = self.params = self.buffers = self.backward = self.extra = 0
        self.macs = 0  # layercalc's own count
        self.values: list[Any] = []  # a peer convention's values (int, ptflops pair or None)


def _add(types: dict[str, _Type], row: Execution, convention: str, training: bool) -> None:
    """Add one row of the run table to its type's numbers (a block only where it adds a count of its own)."""
    entry, n = row.entry, row.copies
    own = [v[convention] for _, v in entry.layer.peer_costs(entry.input_shape, entry.output_shape)]
    backward = own_backward(entry, row.grad, convention) if training else 0
    extra = forward_extra(entry, row.grad, convention) if training else 0
    if not row.leaf and not any(v is not None for v in own) and not backward and not extra:
        return  # a block that adds nothing of its own: its children carry its numbers
    t = types.setdefault(entry.type, _Type())
    t.count += row.held  # layers held: every expert's, though top_k of them run per token
    if row.leaf:
        t.params += entry.params * row.held
        t.buffers += entry.buffers * row.held
        t.macs += entry.macs * n
    t.values += [repeated(v, n) for v in own]
    t.backward += backward * n
    t.extra += extra * n


def by_type(report: Report, convention: str = "layercalc", training: bool = False) -> list[dict[str, Any]]:
    """One row per layer type in order of first appearance: count, params, buffers, MACs, FLOPs
    (under `convention`; None = that tool counts none of them), and with training backward and
    training MACs. The rows are the run table's rows the totals fold over, grouped by type, so
    they sum to the report's totals."""
    types: dict[str, _Type] = {}
    for row in report.run_table:
        if row.entry.layer is not None:  # a repeat group's copies carry its numbers
            _add(types, row, convention, training)

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


def cache_by_type(report: Report) -> list[dict[str, Any]]:
    """Where a decoder's KV cache comes from: the layers that keep one (the causal ones),
    by type in order of first appearance, each with how many run and their share of the cache in
    elements; empty for a network without one."""
    found: dict[str, dict[str, Any]] = {}
    for row in report.executions(leaf=True):  # a layer's own cache (a block's is its children's)
        if row.entry.cache:
            t = found.setdefault(row.entry.type, {"type": row.entry.type, "count": 0, "elements": 0})
            t["count"] += row.copies
            t["elements"] += row.entry.cache * row.copies
            if not _grows(row.entry.layer, row.entry.input_shape):
                t["state"] = True  # a recurrent state, the same at any length: marked, keys and values are not
    return list(found.values())


def _grows(layer: Any, x: tuple[int, ...]) -> bool:
    """Whether what a layer keeps for generation grows with the positions (keys and values do)."""
    def kept(shape: tuple[int, ...]) -> int:
        return sum(numel(s) for s in layer.cache_shapes(shape).values())

    return kept((x[0], x[1] + 1, *x[2:])) > kept(x)
