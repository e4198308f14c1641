"""Every registered layer type has every piece a layer type needs; a forgotten one fails here with
a message naming it. Driven by the registry, so a new type is checked the moment it is registered
(see the README, "Adding a layer type")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layercalc import analyse
from layercalc.layers import REGISTRY
from layercalc.layers.base import Layer
from reference.record import case_config, case_key, case_type, cases

FIGURES = json.loads((Path(__file__).resolve().parent / "reference" / "figures.json").read_text())
TYPES = sorted(REGISTRY)
ROWS: dict[str, list[tuple[Any, tuple[int, ...]]]] = {}
for _entry, _shape in cases():
    ROWS.setdefault(case_type(_entry), []).append((_entry, _shape))


def overrides(cls: type[Layer], method: str) -> bool:
    return getattr(cls, method) is not getattr(Layer, method)


@pytest.mark.parametrize("kind", TYPES)
def test_has_a_hand_computed_row(kind: str) -> None:
    assert ROWS.get(kind), (
        f"layer type {kind!r} has no hand-computed row: add (entry, input shape, output shape, params, buffers, macs)"
        " with the arithmetic written out to CASES in tests/test_layers.py or the family's test file"
    )


@pytest.mark.parametrize("kind", TYPES)
def test_has_catalog_text(kind: str) -> None:
    cls = REGISTRY[kind]
    assert cls.summary, f"layer type {kind!r} has no summary (the one line `layercalc layers` shows)"
    assert all(a.name for a in cls.args)


@pytest.mark.parametrize("kind", TYPES)
def test_has_numpy_forward_and_backward(kind: str) -> None:
    cls = REGISTRY[kind]
    if cls.is_block():
        missing = [m for m in ("sequences", "combine", "merge", "split") if not overrides(cls, m)]
        assert not missing, f"block type {kind!r} has no {', '.join(missing)} (its children's shapes and arrays)"
    else:
        missing = [m for m in ("forward", "backward") if not overrides(cls, m)]
        assert not missing, f"layer type {kind!r} has no NumPy {' or '.join(missing)} (verify and the reference tests need it)"


@pytest.mark.parametrize("kind", TYPES)
def test_costs_are_declared_for_every_convention(kind: str) -> None:
    cls = REGISTRY[kind]
    for entry, shape in ROWS.get(kind, []):
        report = analyse(case_config(entry, shape))
        own = [r for r in report.rows() if r["depth"] == 0][0]
        if own["macs"] and not cls.is_block():
            assert overrides(cls, "peer_costs"), (
                f"layer type {kind!r} has MACs but no peer_costs: say how torchinfo, fvcore, thop, ptflops and"
                " FlopCounterMode count it (layers/peers.py)")
            assert overrides(cls, "backward_macs"), f"layer type {kind!r} has MACs but no backward_macs (--training)"
        stored = FIGURES["conventions"].get(case_key(entry, shape))
        if stored and not cls.is_block() and not overrides(cls, "peer_costs"):
            counted = {t: v for t, v in stored["totals"].items() if isinstance(v, int) and v}
            assert not counted, f"the peer tools count {kind!r} ({counted}) but the type declares no peer_costs"


@pytest.mark.parametrize("kind", TYPES)
def test_has_reference_figures_from_the_real_tools(kind: str) -> None:
    missing = [case_key(e, x) for e, x in ROWS.get(kind, []) if case_key(e, x) not in FIGURES["conventions"]]
    assert not missing, (
        f"no stored peer-tool figures for {kind!r} rows {missing}: run `python tests/reference/record.py`"
        " (needs torch and the peer tools) and commit tests/reference/")


@pytest.mark.parametrize("kind", TYPES)
def test_torch_oracle_builds_it(kind: str) -> None:
    pytest.importorskip("torch")
    torch_models = pytest.importorskip("torch_models")
    for entry, shape in ROWS.get(kind, []):
        try:
            torch_models.build(case_config(entry, shape))
        except (KeyError, AttributeError, TypeError, NotImplementedError) as exc:
            pytest.fail(f"tests/torch_models.py has no torch equivalent for {kind!r} ({type(exc).__name__}: {exc});"
                        " add one (built from torch.nn, never from layercalc's formulas)")


def test_the_readme_catalog_sentence_names_every_type() -> None:
    """The README's list of families under "The config format" names every registered type
    ("conv1d/2d/3d" stands for three); it listed only the CNN types."""
    import re

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = text.index("explains one type; its families:")
    block = text[start:text.index("\n\n", start)]
    named: set[str] = set()
    for word in re.findall(r"\b[a-z][a-z0-9/]*[a-z0-9]\b", block):
        head, *more = word.split("/")
        named.add(head)
        stem = re.match(r"(.*?)\d+d$", head)
        if stem and more:
            named.update(stem.group(1) + m for m in more)
    assert set(REGISTRY) <= named, sorted(set(REGISTRY) - named)
