"""A shipped config's structure at toy sizes, for checks that build the real model with random
weights (tests) or time a whole verify (bench/): the same layers, with smaller numbers."""

from __future__ import annotations

from typing import Any


def shrunk(node: Any, sizes: dict[str, dict[Any, Any]]) -> Any:
    """A copy of a config (or part of it) with each `key: value` of `sizes[key]` replaced by its
    toy value (values not listed kept); lists and mappings copied, the rest shared."""
    if isinstance(node, list):
        return [shrunk(n, sizes) for n in node]
    if isinstance(node, dict):
        return {k: sizes[k].get(v, v) if k in sizes else shrunk(v, sizes) for k, v in node.items()}
    return node
