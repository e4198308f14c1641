"""Property-based fuzzing of the loader and the calculator: every input gives a result or a
ConfigError with a location, never any other exception."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from layercalc import analyse
from layercalc.errors import ConfigError
from layercalc.layers import REGISTRY

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
ARG_NAMES = sorted({a.name for cls in REGISTRY.values() for a in cls.args})
KEYS = ["name", "input", "batch", "dtype", "layers", "repeat", *REGISTRY, *ARG_NAMES]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["same", "valid", "3x224x224", "float64", "int8", "none", "tanh", "", "1e-5"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=40,
)


def outcome(text: str) -> None:
    """Analyse a document; a ConfigError must carry a location, anything else is a bug."""
    try:
        report = analyse(text if "\n" in text else text + "\n")
        assert isinstance(report.total["params"], int)
        list(report.rows(depth=3))
    except ConfigError as exc:
        assert exc.loc.file and str(exc).startswith(exc.loc.file)
        assert "\n" not in str(exc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_yaml_documents(doc: object) -> None:
    outcome(yaml.safe_dump({"input": [3, 8, 8], "layers": doc}) if not isinstance(doc, dict) else yaml.safe_dump(doc))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_json_documents(doc: object) -> None:
    outcome(json.dumps({"input": [3, 16, 16], "layers": [doc]}))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    outcome("input: [3]\nlayers:\n" + text + "\n")


# -- mutations of the shipped configs ------------------------------------------------------------

def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every (container path) in a document, to pick a mutation site from."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: object, path: tuple, how: str, value: object, data: st.DataObject) -> object:
    if not path:
        return value if how == "replace" else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]  # type: ignore[index]
    last = path[-1]
    if how == "delete":
        del parent[last]  # type: ignore[attr-defined]
    elif how == "misspell" and isinstance(parent, dict):
        key = str(last)
        parent[key[:-1] + data.draw(st.sampled_from("aeiouxs_"))] = parent.pop(last)
    else:
        parent[last] = value  # type: ignore[index]
    return doc


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_shipped_configs(data: st.DataObject) -> None:
    if not CONFIGS:
        return
    source = data.draw(st.sampled_from(CONFIGS))
    doc = yaml.safe_load(source.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        sites = _paths(doc)
        path = data.draw(st.sampled_from(sites))
        how = data.draw(st.sampled_from(["delete", "misspell", "replace", "replace"]))
        value = data.draw(st.one_of(scalars, st.just(0), st.just(-1), st.just(10**12), st.just(True),
                                    st.just(2.5), st.just([]), st.just({}), documents))
        try:
            doc = _mutate(doc, path, how, value, data)
        except (KeyError, IndexError, TypeError):
            continue
    outcome(yaml.safe_dump(doc, sort_keys=False))


# -- JSON is parsed as JSON: whatever json.dumps writes reads back as json.loads reads it ---------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(
    json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(json_values, max_size=4), st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
       st.booleans(), st.sampled_from([None, 1, "\t"]))
def test_json_reads_back_as_the_json_module_reads_it(doc: object, ascii_only: bool, indent: object) -> None:
    # ensure_ascii writes an emoji as the surrogate pair "\ud83d\ude00", which YAML refuses
    from layercalc.document import parse_document

    text = json.dumps(doc, ensure_ascii=ascii_only, indent=indent)  # type: ignore[arg-type]
    assert parse_document(text, "net.json") == json.loads(text)


# -- kconv: any sizes give its views or one UsageError, within the limits ------------------------

sizes = st.one_of(st.integers(-2, 12).map(str), st.integers(0, 2000).map(str), st.integers(0, 10**30).map(str),
                  st.tuples(st.integers(0, 40), st.integers(0, 40)).map(lambda hw: f"{hw[0]}x{hw[1]}"),
                  st.text(max_size=6))


small = st.integers(1, 4).map(str)
# sizes that make a convolution most of the time, and now and then one past every limit
inputs = st.one_of(st.integers(1, 12).map(str), st.tuples(st.integers(1, 8), st.integers(1, 8)).map(lambda hw: f"{hw[0]}x{hw[1]}"),
                   st.integers(1, 10**30).map(str), sizes)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"input": inputs, "kernel": small, "stride": small, "padding": st.integers(0, 3).map(str),
                              "dilation": small}), st.sampled_from(["0", "1"]), st.booleans(), st.booleans())
def test_kconv_gives_its_views_or_a_usage_error(args: dict[str, str], output_padding: str, transposed: bool,
                                                animated: bool) -> None:
    from layercalc import kconv as kc
    from layercalc.errors import UsageError
    from layercalc.render.kconv import kconv_text, symbolic_lines

    try:
        geo = kc.geometry(transposed=transposed, output_padding=output_padding if transposed else "0", **args)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    event("a convolution")
    rows, cols = kc.shape(geo)
    assert rows * cols <= kc.MAX_ENTRIES
    data = kc.kconv(geo, rows_up_to=100)
    assert ("rows" in data) == (max(rows, cols) <= 100)
    data["symbolic"] = kc.symbolic(geo, backward=not transposed)
    symbolic_lines(data, 80)
    kconv_text("tsv", data)
    try:
        kc.drawing(geo, animated)
    except UsageError as exc:
        assert "--draw" in str(exc)
