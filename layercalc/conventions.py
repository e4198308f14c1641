"""Peer conventions and training cost on top of an analysed network (pure integer arithmetic).

- `Costing(report, convention)`: every row's MACs as torchinfo, fvcore, thop, ptflops or
  FlopCounterMode count them (from each layer's own `peer_costs`), and the totals;
- `compare(report)`: one row per op category, one column per convention;
- `training(report, convention, optimizer)`: backward MACs (no dL/dx before the first layer
  with parameters, as autograd) and the memory a training step holds.
"""

from __future__ import annotations

from typing import Any, Iterator

from .analysis import Entry, Report
from .layers.peers import CATEGORIES, CONVENTIONS, combine

OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}  # state tensors per parameter


def _weighted(entry: Entry) -> Iterator[tuple[Entry, int]]:
    """An entry's children with how many times each runs (a repeat's last copy stands for the rest)."""
    kids = entry.children
    for i, child in enumerate(kids):
        last = entry.copies and i == len(kids) - 1
        yield child, (entry.copies - len(kids) + 1) if last else 1


def _scale(value: Any, times: int) -> Any:
    if value is None or times == 1:
        return value
    return (value[0] * times, value[1] * times) if isinstance(value, tuple) else value * times


def leaf_values(report: Report) -> Iterator[tuple[str, str, Any]]:
    """(category, convention, value) of every layer and block, weighted by how often it runs."""
    stack: list[tuple[Entry, int]] = [(e, 1) for e in report.entries]
    while stack:
        entry, times = stack.pop()
        if entry.layer is not None:
            for category, values in entry.layer.peer_costs(entry.input_shape, entry.output_shape):
                for convention, value in values.items():
                    yield category, convention, _scale(value, times)
        stack.extend((child, times * w) for child, w in _weighted(entry))


class Costing:
    """MACs of every entry (its subtree) and of the network under one convention."""

    def __init__(self, report: Report, convention: str) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(convention)
        self.report, self.convention = report, convention
        self.batch = report.network.batch
        self._memo: dict[int, list[Any]] = {}

    def _values(self, entry: Entry) -> list[Any]:
        key = id(entry)
        if key not in self._memo:
            own = entry.layer.peer_costs(entry.input_shape, entry.output_shape) if entry.layer else []
            values = [v[self.convention] for _, v in own]
            for child, times in _weighted(entry):
                values += [_scale(v, times) for v in self._values(child)]
            # keep the list short: fold counted values, remember whether anything counted
            counted = [v for v in values if v is not None]
            self._memo[key] = [_fold(counted)] if counted else []
        return self._memo[key]

    def macs(self, entry: Entry) -> int | None:
        """The entry's MACs (with everything below it); None when the tool counts none of it."""
        return combine(self._values(entry), self.convention, self.batch)

    def total(self) -> int | None:
        """The network's MACs under this convention (None: the tool counts nothing here)."""
        values = [v for e in self.report.entries for v in self._values(e)]
        return combine(values, self.convention, self.batch)


def _fold(values: list[Any]) -> Any:
    if isinstance(values[0], tuple):
        return (sum(v[0] for v in values), sum(v[1] for v in values))
    return sum(values)


def compare(report: Report) -> dict[str, Any]:
    """Per op category and convention: the MACs counted (None = not counted), and totals."""
    buckets: dict[tuple[str, str], list[Any]] = {}
    seen: set[str] = set()
    for category, convention, value in leaf_values(report):
        seen.add(category)
        buckets.setdefault((category, convention), []).append(value)
    batch = report.network.batch
    rows = []
    for category in CATEGORIES:
        if category not in seen:
            continue
        cells = {c: combine(buckets.get((category, c), []), c, batch) for c in CONVENTIONS}
        rows.append({"category": category, **cells})
    totals = {c: Costing(report, c).total() for c in CONVENTIONS}
    return {"name": report.network.name, "batch": batch, "unit": "MACs", "rows": rows, "total": totals}


def training(report: Report, convention: str = "layercalc", optimizer: str = "adam") -> dict[str, int]:
    """Backward MACs (dL/dx and dL/dW of conv and linear) and a training step's memory in bytes."""
    backward = _backward(report.entries, needs_grad=False, convention=convention)[1]
    forward = (Costing(report, convention).total() or 0) + _training_forward_extra(report, convention)
    total = report.total
    size = report.dtype_bytes
    params = total["params"]
    kept = total["activation_bytes"]  # every layer's output, kept for the backward pass
    states = OPTIMIZER_STATES[optimizer]
    return {
        "forward_macs": forward,
        "backward_macs": backward,
        "training_macs": forward + backward,
        "training_flops": 2 * (forward + backward),
        "param_bytes": params * size,
        "gradient_bytes": params * size,
        "optimizer_bytes": states * params * size,
        "activation_bytes": kept,
        "training_bytes": (2 + states) * params * size + kept,
    }


def _training_forward_extra(report: Report, convention: str) -> int:
    """What the convention counts in addition when the forward runs with autograd recording."""
    total = 0
    stack: list[tuple[Entry, int]] = [(e, 1) for e in report.entries]
    while stack:
        entry, times = stack.pop()
        if entry.layer is not None and not entry.children:
            total += times * entry.layer.training_forward_extra(entry.input_shape, entry.output_shape, convention)
        stack.extend((child, times * w) for child, w in _weighted(entry))
    return total


def _backward(entries: list[Entry], needs_grad: bool, convention: str) -> tuple[bool, int]:
    """(does the output need a gradient, backward MACs) of a sequence run with this input."""
    total = 0
    for entry in entries:
        needs_grad, cost = _entry_backward(entry, needs_grad, convention)
        total += cost
    return needs_grad, total


def _entry_backward(entry: Entry, needs_grad: bool, convention: str) -> tuple[bool, int]:
    if entry.copies:  # copies in sequence; the last distinct copy runs for all the rest
        total = 0
        for child, times in _weighted(entry):
            first_grad, cost = _entry_backward(child, needs_grad, convention)
            total += cost
            if times > 1:  # later runs see an input that needs a gradient if this one made it so
                _, again = _entry_backward(child, first_grad, convention)
                total += again * (times - 1)
            needs_grad = first_grad
        return needs_grad, total
    layer = entry.layer
    if layer is not None and layer.sequences():
        outs, total = [], 0
        children = iter(entry.children)
        for _, seq in layer.sequences():
            grad, cost = _backward([next(children) for _ in seq], needs_grad, convention)
            outs.append(grad)
            total += cost
        return any(outs), total
    cost = layer.backward_macs(entry.input_shape, entry.output_shape, needs_grad, convention) if layer else 0
    return needs_grad or entry.params > 0, cost


def backward_rows(report: Report, convention: str, depth: int | None = None) -> list[int]:
    """Backward MACs of each row of report.rows(depth), in the same order."""
    out: list[int] = []
    needs_grad = False
    for entry in report.entries:
        needs_grad = _row_costs(entry, needs_grad, convention, 0, depth, out)
    return out


def _row_costs(entry: Entry, needs_grad: bool, convention: str, level: int, depth: int | None, out: list[int]) -> bool:
    after, cost = _entry_backward(entry, needs_grad, convention)
    out.append(cost)
    if depth is not None and level >= depth:
        return after
    if entry.copies:
        last = len(entry.children) - 1
        grad = needs_grad
        for k in range(entry.copies):
            grad = _row_costs(entry.children[min(k, last)], grad, convention, level + 1, depth, out)
    elif entry.children:
        children = iter(entry.children)
        for _, seq in entry.layer.sequences():  # type: ignore[union-attr]
            grad = needs_grad
            for child in [next(children) for _ in seq]:
                grad = _row_costs(child, grad, convention, level + 1, depth, out)
    return after
