"""The reader of plain YAML in document.py gives exactly PyYAML's result (values, types and every
line number) on the configs it reads, and leaves every other text to PyYAML."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layercalc import document
from layercalc.document import Map, Seq, parse_document
from layercalc.errors import DocumentError

ROOT = Path(__file__).resolve().parent.parent
# the strategies' own repr is long; hypothesis warns when it builds it
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
SHIPPED = sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")])


def located(value: Any) -> Any:
    """A value with everything a config's messages use: types, lines of mappings, keys and items."""
    if isinstance(value, Map):
        return ("map", value.line, [(k, value.key_lines[k], located(v)) for k, v in value.items()])
    if isinstance(value, Seq):
        return ("seq", value.line, [(line, located(v)) for line, v in zip(value.item_lines, value, strict=True)])
    return (type(value).__name__, repr(value))  # repr: 1, 1.0 and True differ, and nan equals nan


def outcome(text: str) -> Any:
    """What parse_document makes of a text: the located value, or the message of its DocumentError."""
    try:
        return located(parse_document(text, "net.yaml"))
    except DocumentError as exc:
        return f"error: {exc}"


def pyyaml_outcome(text: str) -> Any:
    """outcome() with the reader switched off: PyYAML reads every text."""
    saved = document._block_events
    document._block_events = lambda text: None
    try:
        return outcome(text)
    finally:
        document._block_events = saved


def read_here(text: str) -> bool:
    """Whether the reader takes the text (rather than leaving it to PyYAML)."""
    return document._block_events(text) is not None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_read_here_as_pyyaml_reads_them(path: Path) -> None:
    text = path.read_text()
    assert read_here(text)
    assert outcome(text) == pyyaml_outcome(text)


# -- generated documents of the subset, written in every layout it allows ---------------------------

WORDS = [
    "relu", "conv2d", "3x224x224", "true", "False", "TRUE", "null", "Null", "yes", "no", "on", "off", "y",
    "1e-5", "1E5", "0x10", "0o17", "0b11", "017", "1_000", ".inf", "-.inf", "+.INF", ".nan", ".NaN", "-1", "+1",
    "1.", ".5", "-.5", "1.5e3", "2001-12-14", "a b", "a  b", "up_proj", "x.y", "a/b", "a-b", "a - b", "_",
    "1.0.0", "+", ".", "...", "- a",
]
plain = st.one_of(
    st.sampled_from(WORDS),
    st.from_regex(document._PLAIN, fullmatch=True).filter(lambda s: len(s) < 30),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
keys = plain.filter(lambda s: s not in ("+", ".", "...", "- a"))
# double-quoted strings without escapes (a template's "${in * 2}"); a " #" would start a comment
quoted = st.from_regex(r'"[A-Za-z0-9 ${}*/+()_.,:\[\]&!|>\'%@`?~=-]*"', fullmatch=True).filter(lambda s: len(s) < 30)
values = plain.filter(lambda s: s not in ("+", ".", "- a")) | quoted  # not plain scalars at all: PyYAML's
trees = st.recursive(
    values | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=25,
)


def flow(value: Any, gap: str) -> str:
    """A value in flow style on one line; `gap` is the space after commas and colons."""
    if isinstance(value, list):
        return "[" + f",{gap}".join(flow(v, gap) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + f",{gap}".join(f"{k}: {flow(v, gap)}" for k, v in value.items()) + "}"
    return "null" if value is None else value


class Layout:
    """Draws the free choices of a block layout: indentation, compact lists, flow style, comments."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def lines(self, value: Any, col: int) -> Iterator[str]:
        """A mapping or list in block style at column col (the lines, with the first line's prefix left out)."""
        if isinstance(value, dict):
            for i, (k, v) in enumerate(value.items()):
                yield from self.entry(f"{k}:", v, col, first=i == 0, same_indent_list=True)
        else:
            for i, v in enumerate(value):
                yield from self.entry("-", v, col, first=i == 0, same_indent_list=False)

    def entry(self, head: str, v: Any, col: int, first: bool, same_indent_list: bool) -> Iterator[str]:
        prefix = "" if first else " " * col
        comment = self.draw(st.sampled_from(["", "", "  # note", " #", " # a: [b, c] 'q' & *x"]))
        if isinstance(v, (list, dict)) and v and not self.draw(st.booleans()):
            if head == "-":  # compact: `- key: value` / `- - item` (a `-` alone on its line is PyYAML's)
                gap = self.draw(st.integers(1, 3))
                inner = list(self.lines(v, col + 1 + gap))
                yield prefix + "-" + " " * gap + inner[0]
                yield from inner[1:]
                return
            yield prefix + head + comment
            if self.draw(st.booleans()):
                yield ""
            step = 0 if same_indent_list and isinstance(v, list) and self.draw(st.booleans()) else self.draw(st.integers(1, 4))
            inner = list(self.lines(v, col + step))
            yield " " * (col + step) + inner[0]
            yield from inner[1:]
        elif v is None and head != "-":
            yield prefix + head + comment
        else:
            yield prefix + head + " " * self.draw(st.integers(1, 2)) + flow(v, self.draw(st.sampled_from([" ", "", "  "]))) + comment


@st.composite
def subset_texts(draw: Any) -> str:
    """A document of the plain subset: a non-empty mapping or list, in a drawn block layout."""
    tree = draw(trees.filter(lambda t: isinstance(t, (list, dict)) and t))
    col = draw(st.integers(0, 3))
    lines = list(Layout(draw).lines(tree, col))
    lines[0] = " " * col + lines[0]
    head = draw(st.sampled_from(["", "# a config\n", "\n\n"]))
    end = draw(st.sampled_from(["\n", "", "\n\n# end\n"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return (head + "\n".join(lines) + end).replace("\n", newline)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset_texts())
def test_generated_subset_documents_are_read_here_as_pyyaml_reads_them(text: str) -> None:
    assert read_here(text), text
    assert outcome(text) == pyyaml_outcome(text)


# -- texts near the subset: whatever the reader takes, it reads as PyYAML does ---------------------

FRAGMENTS = [
    "a", "b", "1", "x y", "-1", ".5", "true", "null", ":", ": ", "- ", "-", " ", "  ", "#", " #c", ",", ", ",
    "[", "]", "{", "}", "'q'", '"q"', "&x ", "*x", "!!str ", "!t ", "|", ">", "? ", "~", "%", "@", "`", "\t",
    "\r", "---", "...", "a:", "b: ", "c: 1", "12:30", "- a", "{a: 1}", "[1, 2]", "<<: ", "=",
]
# lines of the subset, and now and then one of fragments: the reader takes about one in seven of these texts
LINES = ["a: 1", "b:", "- c", "- d: e", "- - f", "g: [1, h]", "i: {j: k, l: [m]}", "- [n]", "o: p q", "r:  # s",
         't: "${in // 2}"', '- {u: "v w", x: ["y"]}']
odd_line = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map("".join)
lines_near = st.lists(
    st.tuples(st.sampled_from([0, 0, 0, 2, 2, 4, 1, 3]), st.one_of(st.sampled_from(LINES), st.sampled_from(LINES), odd_line)),
    min_size=1, max_size=8,
).map(lambda lines: "\n".join(" " * n + body for n, body in lines) + "\n")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_near)
def test_any_text_gives_pyyaml_outcome(text: str) -> None:
    assert outcome(text) == pyyaml_outcome(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset_texts(), st.data())
def test_subset_documents_with_one_change_give_pyyaml_outcome(text: str, data: Any) -> None:
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    insert = data.draw(st.sampled_from([*FRAGMENTS, "\n", "\n  ", *string.punctuation]))
    changed = text[:at] + insert + text[at + cut :]
    assert outcome(changed) == pyyaml_outcome(changed)


# -- what is left to PyYAML ---------------------------------------------------------------------------

LEFT_TO_PYYAML = [
    "a: &x 1\nb: *x\n",  # anchor and alias
    "a: !!str 3\n",  # tag
    "a: 'q'\n",  # single-quoted scalars, and double-quoted ones with an escape or a quote inside
    'a: "q\\n"\n',
    'a: {b: "q\\"r"}\n',
    'a: "q" r\n',
    'a: "q # r"\n',
    "a: |\n  text\n",  # block scalars
    "a: >\n  text\n",
    "a: one\n  two\n",  # a plain scalar over two lines
    "a: [1,\n  2]\n",  # a flow collection over two lines
    "a: {b: 1,\n  c: 2}\n",
    "a: [1, 2,]\n",  # a trailing comma
    "a: [b: 1]\n",  # a pair in a flow list
    "---\na: 1\n",  # document markers
    "a: 1\n...\n",
    "%YAML 1.2\n---\na: 1\n",
    "? a\n: 1\n",  # an explicit key
    "a:\n\t- 1\n",  # a tab
    "- \n- 1\n",  # an empty item
    "a: b#c\n",  # a # inside a scalar
    "a: http://x\n",  # a colon inside a scalar
    "a: 1\r2: 3\n",  # a lone carriage return (a line break to YAML)
    "\ufeffa: 1\n",  # a byte-order mark
    "a: x\u00a0y\n",  # characters outside ASCII in a scalar
    "<<: {a: 1}\n",  # merge keys
    "# only a comment\n",
    "just a scalar\n",
    "a: " + "[" * 100 + "]" * 100 + "\n",  # deeper flow than the reader follows
    "k" * 1030 + ": 1\n",  # a key longer than YAML allows
    "layers:\n" + "  - relu\n" * 30_000,  # long: libyaml reads it faster
]


@pytest.mark.parametrize("text", LEFT_TO_PYYAML, ids=lambda text: repr(text[:24]))
def test_other_yaml_is_left_to_pyyaml(text: str) -> None:
    assert not read_here(text)
    assert outcome(text) == pyyaml_outcome(text)


def test_lines_of_a_null_value_and_a_list_at_its_keys_indentation() -> None:
    # by hand: the null's key is on line 2, the list under `b` starts on line 4 at b's own column
    doc = parse_document("a:\n  x:\n\n\nb:\n- 1\n- [2, 3]\nc: {d: [], e: {}}\n")
    assert doc == {"a": {"x": None}, "b": [1, [2, 3]], "c": {"d": [], "e": {}}}
    assert doc.key_lines == {"a": 1, "b": 5, "c": 8}
    assert doc["a"].key_lines == {"x": 2}
    assert doc["b"].line == 6 and doc["b"].item_lines == [6, 7]


def test_errors_of_a_document_read_here_keep_their_lines() -> None:
    text = "input: [3]\nlayers:\n  - relu\n# c\ninput: [4]\n"
    assert read_here(text)
    with pytest.raises(DocumentError, match="duplicate key 'input' \\(first on line 1\\)") as info:
        parse_document(text)
    assert info.value.loc.line == 5
