"""Tiny Llama-style decoders for the benches that time `layercalc verify`: 16 tokens, 2 blocks of
attention (4 heads, 2 kv heads, rotary) and an MLP, each behind an RMSNorm in a residual, then a
final RMSNorm and the LM head; every linear without bias."""

from __future__ import annotations

from typing import Any

import yaml


def swiglu(hidden: int, width: int) -> list[Any]:
    """Llama's MLP on (N, T, width): silu(gate(x)) · up(x) at `hidden` features, then down to `width`."""
    return [
        {"multiply": {"branches": [[{"linear": {"out_features": hidden, "bias": False}}, "silu"],
                                   [{"linear": {"out_features": hidden, "bias": False}}]]}},
        {"linear": {"out_features": width, "bias": False}},
    ]


def decoder(name: str, vocab: int, width: int, mlp: list[Any]) -> str:
    """YAML text of the decoder: token ids (16) -> logits (16, vocab), `mlp` as each block's MLP."""
    block = [
        {"residual": {"body": [{"rmsnorm": {"eps": 1.0e-5}},
                               {"attention": {"num_heads": 4, "num_kv_heads": 2, "rope": True}}]}},
        {"residual": {"body": [{"rmsnorm": {"eps": 1.0e-5}}, *mlp]}},
    ]
    config = {"name": name, "input": [16], "layers": [
        {"embedding": {"num_embeddings": vocab, "embedding_dim": width}},
        {"sequential": {"layers": block}, "repeat": 2},
        {"rmsnorm": {"eps": 1.0e-5}},
        {"linear": {"out_features": vocab, "bias": False}},
    ]}
    return yaml.safe_dump(config, sort_keys=False)
