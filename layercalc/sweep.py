"""Sweeps: params, MACs and memory of a network as one size varies (sequence length, batch, image side).

`--sweep NAME=A..B[:STEPS]`: T (the first dim of a sequence input), batch, or side (the last two
dims of an image input, kept square). The values run from A to B inclusive in STEPS points (8 by
default), evenly spaced, or geometrically when B/A exceeds 100; rounded to integers, repeats dropped.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .analysis import analyse
from .config import Network
from .errors import ConfigError, UsageError

NAMES = ("T", "batch", "side")
DEFAULT_STEPS = 8
MAX_STEPS = 10_000
SPEC = re.compile(r"^\s*(\w+)\s*=\s*(\d+)\s*\.\.\s*(\d+)\s*(?::\s*(\d+)\s*)?$")


class Sweep(NamedTuple):
    """What varies and over which values."""

    name: str
    values: tuple[int, ...]


def parse(text: str) -> Sweep:
    """'T=128..8192:7' -> Sweep('T', (128, ...)); UsageError naming what is wrong."""
    match = SPEC.match(text)
    if not match:
        raise UsageError(f"--sweep takes NAME=A..B[:STEPS] (NAME one of {', '.join(NAMES)}), got {text!r}")
    name, low, high, steps = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
    if name not in NAMES:
        raise UsageError(f"--sweep {name!r} is not one of {', '.join(NAMES)}")
    count = DEFAULT_STEPS if steps is None else int(steps)
    if not 1 <= low <= high:
        raise UsageError(f"--sweep needs 1 <= A <= B, got {low}..{high}")
    if not 2 <= count <= MAX_STEPS:
        raise UsageError(f"--sweep takes 2 to {MAX_STEPS} steps, got {count}")
    return Sweep(name, points(low, high, count))


def points(low: int, high: int, count: int) -> tuple[int, ...]:
    """count integers from low to high: even steps, or even ratios over more than two decades."""
    if high / low > 100:
        raw = [low * (high / low) ** (i / (count - 1)) for i in range(count)]
    else:
        raw = [low + (high - low) * i / (count - 1) for i in range(count)]
    values = sorted({min(high, max(low, round(v))) for v in raw})
    return tuple(values)


def _network_at(network: Network, sweep: Sweep, value: int) -> Network:
    """The network with the swept size set to value."""
    shape = network.input
    if sweep.name == "batch":
        return network._replace(batch=value)
    if network.inputs:
        raise UsageError(f"--sweep {sweep.name} needs one input, and this network has {len(network.inputs)} named"
                         f" ({', '.join(name for name, _ in network.inputs)}); sweep batch, or set each with --input NAME=SHAPE")
    if sweep.name == "T":
        if not shape:
            raise UsageError("--sweep T needs a sequence input")
        return network._replace(input=(value, *shape[1:]))
    if len(shape) < 3:
        raise UsageError(f"--sweep side needs an image input (C, H, W), got {len(shape)} dims")
    return network._replace(input=(*shape[:-2], value, value))


def run(network: Network, sweep: Sweep) -> dict[str, Any]:
    """Params, MACs and memory (bytes: input, activations, params and any KV cache) at every value."""
    series: dict[str, list[int]] = {"params": [], "macs": [], "memory_bytes": []}
    for value in sweep.values:
        try:
            total = analyse(_network_at(network, sweep, value)).total
        except ConfigError as exc:
            raise UsageError(f"--sweep {sweep.name}={value}: {exc.message}") from None
        series["params"].append(total["params"])
        series["macs"].append(total["macs"])
        series["memory_bytes"].append(total["estimated_total_bytes"] + total.get("kv_cache_bytes", 0))
    return {"name": network.name, "sweep": sweep.name, "values": list(sweep.values), "series": series}
