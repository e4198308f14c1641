"""Every registered layer type has every piece a layer type needs; a forgotten one fails here with
a message naming it and the side it belongs to (the cost side, layers/cost.py, which the calculator
reads; the numeric side, layers/numerics.py, which verify reads). Driven by the registry, so a new
type is checked the moment it is registered (see docs/development.md, "Adding a layer type")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from layercalc import analyse
from layercalc.layers import REGISTRY
from layercalc.layers.base import Layer
from layercalc.layers.cost import CostModel
from layercalc.layers.numerics import Numerics
from reference.record import case_config, case_key, case_type, cases

FIGURES = json.loads((Path(__file__).resolve().parent / "reference" / "figures.json").read_text())
TYPES = sorted(REGISTRY)
ROWS: dict[str, list[tuple[Any, tuple[int, ...]]]] = {}
for _entry, _shape in cases():
    ROWS.setdefault(case_type(_entry), []).append((_entry, _shape))


def overrides(cls: type[Layer], method: str) -> bool:
    """True when the type writes its own `method` instead of its side's default."""
    side = CostModel if method in vars(CostModel) else Numerics
    return getattr(cls, method) is not getattr(side, method)


def test_the_catalog_table_is_what_the_modules_register() -> None:
    """layers/__init__.py's FAMILIES says which module to import for a type (the catalog loads a
    family on its first lookup) and the catalog order: every module of the package imported, the
    types each registers, in order, must be the table's row for it."""
    import importlib
    import pkgutil

    import layercalc.layers as package
    from layercalc.layers import FAMILIES
    from layercalc.layers.base import REGISTERED

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    found: dict[str, list[str]] = {}
    for name, cls in REGISTERED.items():
        family, _, module = cls.__module__.rpartition(".")
        if family == package.__name__:  # not a test's own type
            found.setdefault(module, []).append(name)
    assert found == {module: list(names) for module, names in FAMILIES.items()}, (
        "layers/__init__.py's FAMILIES must list each module's types in the order they are registered"
    )
    listed = [name for names in FAMILIES.values() for name in names]
    assert list(REGISTRY)[:len(listed)] == listed  # the catalog lists its types in the table's order


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
        assert not missing, (f"block type {kind!r} has no {', '.join(missing)} (its children's shapes,"
                             " layers/cost.py, and arrays, layers/numerics.py)")
    else:
        missing = [m for m in ("forward", "backward") if not overrides(cls, m)]
        assert not missing, (f"layer type {kind!r} has no NumPy {' or '.join(missing)} (the numeric side, layers/numerics.py:"
                             " verify and the reference tests need it)")


@pytest.mark.parametrize("kind", TYPES)
def test_costs_are_declared_for_every_convention(kind: str) -> None:
    cls = REGISTRY[kind]
    for entry, shape in ROWS.get(kind, []):
        report = analyse(case_config(entry, shape))
        own = [r for r in report.rows() if r["depth"] == 0][0]
        if own["macs"] and not cls.is_block():
            assert overrides(cls, "peer_counts") or overrides(cls, "peer_parts"), (
                f"layer type {kind!r} has MACs but no peer_counts (the cost side, layers/cost.py): say how"
                " torchinfo, fvcore, thop, ptflops and FlopCounterMode count it (layers/peers.py)")
            assert overrides(cls, "backward_parts"), (
                f"layer type {kind!r} has MACs but no backward_parts (the cost side, layers/cost.py; --training)")
        stored = FIGURES["conventions"].get(case_key(entry, shape))
        if stored and not cls.is_block() and not (overrides(cls, "peer_counts") or overrides(cls, "peer_parts")):
            counted = {t: v for t, v in stored["totals"].items() if isinstance(v, int) and v}
            assert not counted, f"the peer tools count {kind!r} ({counted}) but the type declares no peer_counts"


def _macs_over_lengths(entry: Any, shape: tuple[int, ...], lengths: range) -> list[int] | None:
    """The row's MACs with its dim 1 (a sequence's length) set to each length; None if any is refused."""
    from layercalc.errors import LayercalcError

    try:
        return [analyse(case_config(entry, (shape[0], t, *shape[2:]))).total["macs"] for t in lengths]
    except LayercalcError:
        return None


@pytest.mark.parametrize("kind", TYPES)
def test_a_cost_quadratic_in_the_length_is_declared_as_core_macs(kind: str) -> None:
    """Selective recompute runs attention's T×T products again: a type whose MACs have a T² term
    must report it as core_macs (the cost side, layers/cost.py), or the plans count none of it."""
    cls = REGISTRY[kind]
    if cls.is_block():
        return
    for entry, shape in ROWS.get(kind, []):
        if len(shape) < 3:
            continue
        macs = _macs_over_lengths(entry, shape, range(1, 5))
        if macs is None:
            continue
        second = macs[2] - 2 * macs[1] + macs[0]  # 2·b for MACs = c + a·T + b·T²
        if second == 0 or macs[3] - 3 * macs[2] + 3 * macs[1] - macs[0] != 0:
            continue  # no T² term, or not a polynomial of degree 2 in T
        entry0 = analyse(case_config(entry, shape)).entries[0]
        assert entry0.layer.core_macs(entry0.input_shape) == second * shape[1] ** 2 // 2, (
            f"layer type {kind!r} has MACs quadratic in the sequence length ({second // 2}·T²) but"
            f" core_macs reports {entry0.layer.core_macs(entry0.input_shape)}: override core_macs"
            " (the cost side, layers/cost.py) with its T×T products")


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
    """The manual's list of families in "The config format" (docs/config.md) names every registered type
    ("conv1d/2d/3d" stands for three); it listed only the CNN types."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
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


class _Forbidden:
    """A class attribute that fails when read: marks the numeric side as out of bounds."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        raise AssertionError(f"the calculator read {self.name!r}, which belongs to the numeric side (verify's)")


NUMERIC_SIDE = sorted(n for n in vars(Numerics) if not n.startswith("__") and n not in vars(CostModel))


def test_the_calculator_reads_only_the_cost_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command's figures (all conventions, training, by type, the catalog) come from the cost
    side alone: with every numeric attribute made unreadable, every shipped config still reports."""
    from layercalc import api

    assert {"forward", "backward", "init_params", "work_elements", "python_steps", "kinks"} <= set(NUMERIC_SIDE)
    for cls in {c for kind in REGISTRY.values() for c in kind.__mro__ if issubclass(c, Numerics)}:
        for name in NUMERIC_SIDE:
            if name in vars(cls):
                guard = _Forbidden()
                guard.__set_name__(cls, name)
                monkeypatch.setattr(cls, name, guard)
    configs = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        report = api.analyse(str(path))
        api.render(report, "json", "flops", compare=True)
        for convention in ("layercalc", "torch"):
            api.render(report, "json", "summary", convention=convention, training=True)
            api.render(report, "json", "summary", convention=convention, training=True, by_type=True)
        for convention in ("fvcore", "thop", "ptflops", "torchinfo"):
            api.render(report, "json", "flops", convention=convention)
    for kind in TYPES:
        api.describe(kind)


def test_the_cost_side_imports_no_numerics() -> None:
    """The cost side and its vocabulary stay pure integer arithmetic: no NumPy, no verify, no noise pool."""
    import ast

    layers = Path(__file__).resolve().parent.parent / "layercalc" / "layers"
    for module in ("cost.py", "schema.py", "peers.py", "geometry.py"):
        tree = ast.parse((layers / module).read_text())
        imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        bad = {m for m in imported if any(w in m for w in ("numpy", "lazy", "verify", "numerics", "kernels"))}
        assert not bad, f"layers/{module} imports {sorted(bad)}: the calculator must not need them"
