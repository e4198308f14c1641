"""Reading a config document (YAML or JSON) into plain values that remember their line numbers.

The document is built from an event stream by a loop with an explicit stack, not by PyYAML's
recursive composer. The events come from a reader of the plain subset of YAML configs are
written in (no PyYAML import at all, which costs more than reading a config), or, for any
other YAML, from PyYAML (libyaml's C parser when present). Either way:
- every mapping and list knows the line of each key and item, for error messages;
- no tag ever constructs an object, and plain scalars follow YAML 1.2's core schema
  (`1e-5` is a float, `yes` is a string, `true` is a bool and never the integer 1);
- duplicate keys are errors, not silent overwrites;
- alias expansion ("billion laughs") and nesting depth are bounded, and a deep document
  cannot overflow the Python stack.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import os
import re
import sys
from typing import Any, Iterable, Iterator

from .errors import DocumentError, Location

MAX_BYTES = 64 * 1024 * 1024  # a config is a few KB; 64 MiB is 100x the largest sane one
MAX_NODES = 5_000_000  # values after alias expansion
MAX_NESTING = 10_000  # mapping/list levels

class Map(dict):
    """A YAML mapping; `line` is where it starts, `key_lines[key]` where each key stands."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class Seq(list):
    """A YAML sequence; `line` is where it starts, `item_lines[i]` where each item starts."""

    __slots__ = ("line", "item_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def line_of(value: Any, default: int | None = None) -> int | None:
    """The line a located value starts on (None for scalars, which carry no line)."""
    return getattr(value, "line", default)


# -- scalars: YAML 1.2 core schema for plain scalars -----------------------------------------------

_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = r"[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)\Z"
_FLOAT = r"[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?\Z"
_NUMBER_START = set("0123456789+-.")  # what an int, a float or .inf/.nan starts with
_SPECIAL_FLOAT = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
_CORE = "tag:yaml.org,2002:"


@functools.lru_cache(maxsize=None)
def _number_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(int, float) of the core schema, compiled on first use."""
    return re.compile(_INT), re.compile(_FLOAT)


@functools.lru_cache(maxsize=4096)  # configs repeat the same few words thousands of times
def resolve_plain(text: str) -> Any:
    """A plain (unquoted) scalar's value: null, bool, int, float or the string itself."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if text[0] not in _NUMBER_START:  # a word (most of a config's scalars)
        return text
    if text.isdigit() and text.isascii():  # a plain integer: the other common case, read without patterns
        return int(text)
    integer, real = _number_patterns()
    if integer.match(text):
        return int(text, 0) if text.lstrip("+-")[:2] in ("0x", "0o") else int(text.replace("_", ""))
    if real.match(text):
        return float(text.replace("_", ""))
    low = text.lower()
    if low in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[low]
    return text


def _tagged(tag: str, text: str, line: int) -> Any:
    """A scalar with an explicit core tag (!!str, !!int, ...); any other tag is refused."""
    kind = tag[len(_CORE) :] if tag.startswith(_CORE) else None
    if kind == "str":
        return text
    if kind in ("int", "float", "bool", "null"):
        value = resolve_plain(text)
        ok = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}[kind]
        if isinstance(value, ok) and not (kind in ("int", "float") and isinstance(value, bool)):
            return float(value) if kind == "float" else value
        raise DocumentError(f"{text!r} is not a valid !!{kind}", Location(line=line), value=text)
    raise DocumentError(f"tag {_short_tag(tag)} is not allowed (configs are plain data)", Location(line=line), tag)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


# -- reading ----------------------------------------------------------------------------------------


def read_source(source: str | os.PathLike[str]) -> tuple[str, str]:
    """Read a config file (or '-' for stdin); return (text, name for messages)."""
    name = str(source)
    display = "stdin" if name == "-" else name
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            if os.path.isdir(name):
                raise DocumentError("is a directory, not a config file", Location(file=display))
            with open(name, "rb") as fh:
                data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise DocumentError("no such file", Location(file=display)) from None
    except PermissionError:
        raise DocumentError("permission denied", Location(file=display)) from None
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}", Location(file=display)) from None
    return decode(data, display), display


# byte-order marks of the wide encodings (PowerShell's `>` writes UTF-16 LE); UTF-32 LE's
# mark begins with UTF-16 LE's, so it is tried first
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def _encoding(data: bytes) -> str | None:
    """The wide encoding a byte-order mark announces (None: UTF-8, with or without its mark)."""
    return next((enc for bom, enc in _BOMS if data.startswith(bom)), None)


def decode(data: bytes, name: str) -> str:
    """UTF-8 text of a config, or a DocumentError saying why it is not one."""
    if len(data) > MAX_BYTES:
        raise DocumentError(f"larger than {MAX_BYTES // 2**20} MiB; not a config", Location(file=name))
    encoding = _encoding(data)
    if encoding is None and b"\0" in data:
        if len(data) > 1 and data.count(b"\0") * 2 >= len(data) - 1:
            raise DocumentError("UTF-16 or UTF-32 text without a byte-order mark; save it as UTF-8", Location(file=name))
        raise DocumentError("binary data, not a YAML or JSON config", Location(file=name))
    if encoding is None:  # UTF-8: its byte-order mark dropped here, as the utf-8-sig codec (a module to import) would
        data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DocumentError(f"not {encoding or 'UTF-8'} text (byte 0x{data[exc.start]:02x})", Location(file=name, line=line)) from None
    if not text.strip():
        raise DocumentError("empty config", Location(file=name))
    return text


def parse_document(text: str, name: str = "<config>") -> Any:
    """Parse one YAML/JSON document into Map/Seq/scalars; raises DocumentError with a line.

    A .json file is parsed as JSON (RFC 8259), and so is any other text that is valid JSON:
    YAML refuses some valid JSON (an emoji as the surrogate pair "\\ud83d\\ude00"). Other
    text, such as YAML's own flow style `{input: [3], layers: [relu]}`, is YAML: read here when
    it keeps to the plain subset configs are written in (see _BlockReader), else by PyYAML.
    """
    if name.lower().endswith(".json") or text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        try:
            return _build(_json_events(text))
        except DocumentError as exc:
            if name.lower().endswith(".json"):
                raise exc.at(file=name) from None
    events = _block_events(text)
    if events is None:
        return _parse_yaml(text, name)
    try:
        return _build(events)
    except DocumentError as exc:
        raise exc.at(file=name) from None


def _parse_yaml(text: str, name: str) -> Any:
    """parse_document's YAML by PyYAML (libyaml's C parser when present), for any YAML at all."""
    import yaml  # a fifth of the start-up of a calculation; most configs never need it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's is 10x faster; both behave the same
    try:
        return _build(yaml.parse(text, Loader=loader), yaml)
    except DocumentError as exc:
        raise exc.at(file=name) from None
    except yaml.MarkedYAMLError as exc:
        raise _marked_error(exc, text, name) from None
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        raise DocumentError(f"invalid YAML: character {char!r} is not allowed", Location(file=name, line=line)) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {' '.join(str(exc).split())}", Location(file=name)) from None
    except RecursionError:  # pragma: no cover - the loop below keeps its own stack
        raise DocumentError("nested too deeply", Location(file=name)) from None


def _marked_error(exc: Any, text: str, name: str) -> DocumentError:
    """The DocumentError for PyYAML's syntax error `exc` (a MarkedYAMLError), at its line."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    if mark and _tab_at(text, mark.index):
        # libyaml only says "found character that cannot start any token"
        return DocumentError("invalid YAML: a tab indents this line; YAML indents with spaces only", Location(file=name, line=line))
    what = exc.problem or exc.context or "syntax error"
    if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
        what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    return DocumentError(f"invalid YAML: {what}", Location(file=name, line=line))


class _Event:
    """An event of a document read here (JSON, plain YAML): the attributes _Builder reads of PyYAML's events."""

    __slots__ = ("line", "value", "style")
    tag = None  # never written: the plain subset has no tags
    anchor = None  # nor anchors

    def __init__(self, line: int, value: str = "", style: str | None = None) -> None:
        self.line = line  # 0-based, as in PyYAML's marks
        self.value = value
        self.style = style  # None: plain, resolved as YAML 1.2's core schema reads it; '"': a string

    @property
    def start_mark(self) -> _Event:
        """Where the event starts: the event itself carries the `line` PyYAML's marks do."""
        return self


class _ScalarEvent(_Event):
    """A scalar: plain text, or a quoted string."""

    __slots__ = ()


class _MappingStartEvent(_Event):
    """A mapping opens."""

    __slots__ = ()


class _SequenceStartEvent(_Event):
    """A sequence opens."""

    __slots__ = ()


class _EndEvent(_Event):
    """The innermost open mapping or sequence closes."""

    __slots__ = ()


# -- the plain subset of YAML, read here -------------------------------------------------------------

# A plain scalar as _BlockReader takes it, with the spaces after it (which are not part of it):
# ASCII letters, digits and _ . / + -, spaces inside, starting with a letter, digit or _, or with
# a sign or dot before one (-1, +.5, .inf). None of the characters YAML gives a meaning to
# (: # , [ ] { } & * ! | > ' " % @ ` ? ~ =) can occur in it.
_PLAIN = r"(?:[A-Za-z0-9_]|[-+.](?=[A-Za-z0-9_.]))[A-Za-z0-9_./+ -]*"
# a double-quoted string without escapes: between its quotes, the characters themselves
_QUOTED = r'"[^"\\]*"'
_KEY_LENGTH = 1000  # YAML allows a key of at most 1024 characters on the key's line
# Past about 5,000 lines libyaml's C parser, import included, reads faster than this reader
_READ_HERE_MAX = 200_000  # characters


@functools.lru_cache(maxsize=None)
def _block_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(plain scalar, `key:` with what follows, `:` after a flow key, quoted string), compiled on first use."""
    return re.compile(_PLAIN), re.compile(rf"({_PLAIN}):(?: +(.*))?\Z"), re.compile(": +"), re.compile(_QUOTED)


class _Unreadable(Exception):
    """The text uses YAML beyond the plain subset _BlockReader reads; PyYAML reads it instead."""


def _block_events(text: str) -> list[_Event] | None:
    """The events of a text in the plain subset of YAML, or None for any other text (or a long one)."""
    if len(text) > _READ_HERE_MAX:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")  # a lone \r is a line break to YAML: left to PyYAML below
    # tabs, control characters, a byte-order mark and YAML's other line breaks are not printable
    if not text.replace("\n", "").isprintable():
        return None
    try:
        return _BlockReader().read(text)
    except _Unreadable:
        return None


def _is_item(body: str) -> bool:
    """Whether a line (indentation removed) is a block list's `- ` entry."""
    return body[:2] == "- " or body == "-"


class _BlockReader:
    """A config in the plain subset of YAML, read line by line into the events PyYAML would give.

    The subset: block mappings and lists indented with spaces, one entry per line; keys plain
    scalars (see _PLAIN); values plain scalars or double-quoted strings without escapes (a
    template's "${in * 2}"), or flow collections of them (`[3, 3]`,
    `{out_channels: 64, kernel_size: [3, 3]}`) that close on their line; comments. Anything else
    (single quotes, escapes, anchors, aliases, tags, multi-line scalars, document markers, an empty `-` item)
    raises _Unreadable, and PyYAML reads the text instead, so the result is always PyYAML's.
    """

    def __init__(self) -> None:
        self.events: list[_Event] = []
        self.open: list[tuple[int, bool]] = []  # (indentation, is a mapping) of each open block collection
        self.pending: int | None = None  # the 0-based line of a `key:` whose value may be on the lines below
        self.plain, self.key, self.colon, self.quoted = _block_patterns()

    def read(self, text: str) -> list[_Event]:
        """Every event of the text; _Unreadable when it leaves the subset."""
        for n, raw in enumerate(text.split("\n")):
            hash_at = raw.find("#")
            if hash_at >= 0:
                if hash_at and raw[hash_at - 1] != " ":
                    raise _Unreadable  # a # inside a scalar
                raw = raw[:hash_at]
            body = raw.rstrip(" ")
            if not body:
                continue
            indent = len(body) - len(body.lstrip(" "))
            if indent == 0 and body.startswith(("---", "...")):
                raise _Unreadable  # document markers
            self.line(n, indent, body[indent:])
        if not self.events:
            raise _Unreadable  # nothing but comments: PyYAML's path says so
        self.settle()
        while self.open:
            self.close()
        return self.events

    def settle(self) -> None:
        """A pending `key:` with no deeper line under it has the value null (the empty plain scalar)."""
        if self.pending is not None:
            self.events.append(_ScalarEvent(self.pending))
            self.pending = None

    def line(self, n: int, indent: int, body: str) -> None:
        """One line with content, its indentation removed."""
        if not self.events:  # the root
            if body[0] in "[{":
                self.value(n, body)
            else:
                self.node(n, indent, body)
            return
        if self.pending is not None:
            key_indent = self.open[-1][0]
            if indent > key_indent or (indent == key_indent and _is_item(body)):  # the key's value
                self.pending = None
                self.node(n, indent, body)
                return
            self.settle()
        self.dedent(indent, body)
        if self.open[-1][1]:
            self.entry(n, body)
        else:
            self.item(n, indent, body)

    def dedent(self, indent: int, body: str) -> None:
        """Close the collections deeper than this line; the one left must be at its indentation."""
        while self.open and self.open[-1][0] > indent:
            self.close()
        if not self.open or self.open[-1][0] != indent:
            raise _Unreadable  # after the root, or at no open collection's indentation
        if not self.open[-1][1] and not _is_item(body) and self.open[-2:-1] == [(indent, True)]:
            self.close()  # a list at its key's own indentation ends where the mapping goes on

    def close(self) -> None:
        self.open.pop()
        self.events.append(_EndEvent(0))  # the builder takes the line from where the collection started

    def node(self, n: int, col: int, body: str) -> None:
        """A block collection whose first entry starts at column col, with body."""
        is_map = not _is_item(body)
        self.events.append((_MappingStartEvent if is_map else _SequenceStartEvent)(n))
        self.open.append((col, is_map))
        if is_map:
            self.entry(n, body)
        else:
            self.item(n, col, body)

    def item(self, n: int, col: int, body: str) -> None:
        """`- value` in the list at column col."""
        if not _is_item(body):
            raise _Unreadable
        rest = body[1:].lstrip(" ")
        if not rest:
            raise _Unreadable  # an empty item: its null is left to PyYAML
        if _is_item(rest) or self.key.match(rest):
            self.node(n, col + len(body) - len(rest), rest)
        else:
            self.value(n, rest)

    def entry(self, n: int, body: str) -> None:
        """`key: value` or `key:` in the open mapping."""
        match = self.key.match(body)
        if match is None or match.end(1) > _KEY_LENGTH:
            raise _Unreadable
        self.events.append(_ScalarEvent(n, match.group(1).rstrip(" ")))
        if match.group(2) is None:
            self.pending = n
        else:
            self.value(n, match.group(2))

    def value(self, n: int, text: str) -> None:
        """A scalar or flow collection that fills the rest of its line."""
        if text[0] in "[{":
            end = _FlowReader(self, n).read(text)
        elif text[0] == '"':
            end = _quoted(self.quoted, self.events, n, text, 0)
        else:
            scalar = self.plain.match(text)
            end = scalar.end() if scalar else 0
            self.events.append(_ScalarEvent(n, text[:end]))
        if end != len(text):
            raise _Unreadable


class _FlowReader:
    """A flow collection of plain scalars on one line (`{a: [1, 2], b: c}`), as events."""

    MAX_DEPTH = 64  # deeper is left to PyYAML, which counts it against MAX_NESTING as any YAML

    def __init__(self, block: _BlockReader, line: int) -> None:
        self.events = block.events
        self.plain, self.colon, self.quoted = block.plain, block.colon, block.quoted
        self.line = line
        self.closers: list[str] = []  # "]" or "}" of each open collection

    def read(self, text: str) -> int:
        """Read the collection that starts at text[0]; return where it ends."""
        pos, want = 0, "value"
        while True:
            while text[pos : pos + 1] == " ":
                pos += 1
            if want == "more":  # after a value: a comma or a closing bracket
                pos, want = self.more(text, pos)
                if not self.closers:
                    return pos
            elif want == "key":
                pos, want = self.key(text, pos), "value"
            elif text[pos : pos + 1] in ("[", "{"):
                pos, want = self.start(text, pos)
            else:
                pos, want = self.scalar(text, pos), "more"

    def more(self, text: str, pos: int) -> tuple[int, str]:
        ch = text[pos : pos + 1]
        if ch == ",":
            return pos + 1, "key" if self.closers[-1] == "}" else "value"
        if ch != self.closers[-1] or not ch:
            raise _Unreadable  # `[a: 1]` (a pair in a list), a missing bracket, ...
        self.closers.pop()
        self.events.append(_EndEvent(self.line))
        return pos + 1, "more"

    def key(self, text: str, pos: int) -> int:
        scalar = self.plain.match(text, pos)
        colon = self.colon.match(text, scalar.end()) if scalar else None
        if colon is None or scalar.end() - pos > _KEY_LENGTH:  # type: ignore[union-attr]
            raise _Unreadable  # `{a}`, `{a:1}`, `{a: }`, a quoted key, ...
        self.events.append(_ScalarEvent(self.line, scalar.group().rstrip(" ")))  # type: ignore[union-attr]
        return colon.end()

    def start(self, text: str, pos: int) -> tuple[int, str]:
        is_map = text[pos] == "{"
        if len(self.closers) >= self.MAX_DEPTH:
            raise _Unreadable
        self.events.append((_MappingStartEvent if is_map else _SequenceStartEvent)(self.line))
        self.closers.append("}" if is_map else "]")
        after = len(text) - len(text[pos + 1 :].lstrip(" "))
        if text[after : after + 1] == self.closers[-1]:  # empty: [] or {}
            return after, "more"
        return pos + 1, "key" if is_map else "value"

    def scalar(self, text: str, pos: int) -> int:
        if text[pos : pos + 1] == '"':
            return _quoted(self.quoted, self.events, self.line, text, pos)
        scalar = self.plain.match(text, pos)
        if scalar is None:
            raise _Unreadable  # a trailing comma, a quoted string, ...
        self.events.append(_ScalarEvent(self.line, scalar.group().rstrip(" ")))
        return scalar.end()


def _quoted(pattern: re.Pattern[str], events: list[_Event], line: int, text: str, pos: int) -> int:
    """A double-quoted string without escapes at text[pos], as a string event; where it ends."""
    match = pattern.match(text, pos)
    if match is None:
        raise _Unreadable  # an escape, or no closing quote on the line
    events.append(_ScalarEvent(line, match.group()[1:-1], '"'))
    return match.end()


@functools.lru_cache(maxsize=None)
def _json_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(space, number, word, lone surrogate): compiled on the first JSON text, not at every start-up."""
    return (
        re.compile(r"[ \t\n\r]*"), re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"),
        re.compile(r"true|false|null"), re.compile("[\ud800-\udfff]"),
    )


def _json_events(text: str) -> Iterator[Any]:
    """A JSON document as the events _build folds: strings as quoted scalars (always str),
    numbers and true/false/null as plain ones (resolved as YAML 1.2's core schema reads them,
    which agrees with JSON). Iterative, so nesting depth costs no Python stack."""
    scanner = _JsonScanner(text.removeprefix("\ufeff"))
    step = {"key": scanner.key, "value": scanner.value, "close": scanner.close, "next": scanner.next}
    while scanner.expect != "end":
        yield from step[scanner.expect]()


class _JsonScanner:
    """A JSON text read token by token; `expect` names what may come next (key, value, close, next, end)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.space_re, self.number_re, self.word_re, self.surrogate_re = _json_patterns()
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.closers: list[str] = []  # "}" or "]" of each open container
        self.pos, self.expect = self.space(0), "value"

    def line(self, pos: int) -> int:
        """The 0-based line of a position."""
        return bisect.bisect_left(self.newlines, pos)

    def fail(self, message: str, pos: int) -> DocumentError:
        return DocumentError(f"invalid JSON: {message}", Location(line=self.line(pos) + 1))

    def space(self, pos: int) -> int:
        return self.space_re.match(self.text, pos).end()  # type: ignore[union-attr]

    def char(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def string(self, pos: int) -> tuple[str, int]:
        import json.decoder  # only JSON texts need it

        try:
            value, end = json.decoder.scanstring(self.text, pos + 1, True)
        except json.decoder.JSONDecodeError as exc:
            raise self.fail(exc.msg.lower(), exc.pos) from None
        lone = self.surrogate_re.search(value)
        if lone:  # a pair has been joined into one character; half of one is no character at all
            raise self.fail(f"\\u{ord(lone.group()):04x} is half of a UTF-16 surrogate pair, not a character", pos)
        return value, end

    def key(self) -> Iterator[Any]:
        if self.char() != '"':
            raise self.fail(f"expected a key in double quotes, found {_found(self.char())}", self.pos)
        key, pos = self.string(self.pos)
        yield _ScalarEvent(self.line(pos), key, '"')
        pos = self.space(pos)
        if self.text[pos : pos + 1] != ":":
            raise self.fail(f"expected ':' after the key {key!r}", pos)
        self.pos, self.expect = self.space(pos + 1), "value"

    def value(self) -> Iterator[Any]:
        ch, pos = self.char(), self.pos
        if ch in ("{", "["):
            yield (_MappingStartEvent if ch == "{" else _SequenceStartEvent)(self.line(pos))
            self.closers.append("}" if ch == "{" else "]")
            self.pos = self.space(pos + 1)
            if self.char() == self.closers[-1]:
                self.expect = "close"
            else:
                self.expect = "key" if ch == "{" else "value"
            return
        if ch == '"':
            value, end = self.string(pos)
            yield _ScalarEvent(self.line(pos), value, '"')
        else:
            token = self.number_re.match(self.text, pos) or self.word_re.match(self.text, pos)
            if token is None:
                raise self.fail(f"expected a value, found {_found(ch)}", pos)
            yield _ScalarEvent(self.line(pos), token.group())
            end = token.end()
        self.pos, self.expect = self.space(end), "next"

    def close(self) -> Iterator[Any]:
        """A container's closing bracket."""
        self.closers.pop()
        yield _EndEvent(0)  # the builder closes whichever container is open
        self.pos, self.expect = self.space(self.pos + 1), "next"

    def next(self) -> Iterator[Any]:
        """After a value: a comma, the container's end, or the end of the text."""
        ch = self.char()
        if not self.closers:
            if self.pos < len(self.text):
                raise self.fail(f"extra data after the document: {self.text[self.pos : self.pos + 10]!r}", self.pos)
            self.expect = "end"
        elif ch == ",":
            self.pos = self.space(self.pos + 1)
            self.expect = "key" if self.closers[-1] == "}" else "value"
        elif ch == self.closers[-1]:
            self.expect = "close"
        else:
            raise self.fail(f"expected ',' or {self.closers[-1]!r}, found {_found(ch)}", self.pos)
        return iter(())


def _found(ch: str) -> str:
    return repr(ch) if ch else "the end"


def _tab_at(text: str, index: int) -> bool:
    """True when a tab sits at index, or in the indentation of the line that holds it."""
    start = text.rfind("\n", 0, index) + 1
    indent = text[start : len(text) - len(text[start:].lstrip(" \t"))]
    return text[index : index + 1] == "\t" or "\t" in indent


class _Frame:
    """A mapping or list under construction."""

    __slots__ = ("value", "key", "key_line", "anchor", "size")

    def __init__(self, value: Map | Seq, anchor: str | None) -> None:
        self.value = value
        self.key: Any = _NO_KEY
        self.key_line = 0
        self.anchor = anchor
        self.size = 1


_NO_KEY = object()


def _build(events: Iterable[Any], pyyaml: Any = None) -> Any:
    """Fold an event stream (this module's events, or PyYAML's when `pyyaml` is the yaml module)
    into located values, with an explicit stack."""
    builder = _Builder()
    handlers: dict[type, Any] = {
        _ScalarEvent: builder.scalar, _MappingStartEvent: builder.start_map,
        _SequenceStartEvent: builder.start_seq, _EndEvent: builder.end,
    }
    if pyyaml is not None:
        handlers = {
            pyyaml.ScalarEvent: builder.scalar, pyyaml.MappingStartEvent: builder.start_map,
            pyyaml.SequenceStartEvent: builder.start_seq, pyyaml.MappingEndEvent: builder.end,
            pyyaml.SequenceEndEvent: builder.end, pyyaml.AliasEvent: builder.alias,
            pyyaml.DocumentStartEvent: builder.document,
        }
    for event in events:
        handler = handlers.get(type(event))
        if handler is not None:
            handler(event)
    if not builder.have_root or builder.root is None:
        raise DocumentError("empty config")
    return builder.root


class _Builder:
    """The state of _build: open containers, anchors, the root, and how many values so far."""

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.root: Any = None
        self.have_root = False
        self.documents = 0
        self.total = 0  # values after alias expansion, bounded by MAX_NODES

    def add(self, value: Any, line: int, size: int) -> None:
        """Put a finished value (of `size` values in all) into the open container, or make it the root."""
        self.total += size
        if self.total > MAX_NODES:
            raise DocumentError(f"expands to more than {MAX_NODES:,} values (an alias bomb?)", Location(line=line))
        if not self.stack:
            self.root, self.have_root = value, True
            return
        top = self.stack[-1]
        top.size += size
        container = top.value
        if isinstance(container, Seq):
            container.append(value)
            container.item_lines.append(line)
        elif top.key is _NO_KEY:
            if not isinstance(value, str):
                raise DocumentError(f"keys must be strings, got {value!r}", Location(line=line), value)
            if value in container:
                first = container.key_lines[value]
                raise DocumentError(f"duplicate key {value!r} (first on line {first})", Location(line=line), value)
            top.key, top.key_line = value, line
        else:
            container[top.key] = value
            container.key_lines[top.key] = top.key_line
            top.key = _NO_KEY

    def scalar(self, event: Any) -> None:
        line = event.start_mark.line + 1
        if event.tag is None or event.tag == "!":
            value = event.value if event.style or event.tag else resolve_plain(event.value)
        else:
            value = _tagged(event.tag, event.value, line)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)
        self.add(value, line, 1)

    def start_map(self, event: Any) -> None:
        self.start(event, is_map=True)

    def start_seq(self, event: Any) -> None:
        self.start(event, is_map=False)

    def start(self, event: Any, is_map: bool) -> None:
        line = event.start_mark.line + 1
        if event.tag is not None and event.tag not in (_CORE + ("map" if is_map else "seq"), "!"):
            raise DocumentError(f"tag {_short_tag(event.tag)} is not allowed (configs are plain data)", Location(line=line))
        if len(self.stack) >= MAX_NESTING:
            raise DocumentError(f"nested more than {MAX_NESTING:,} levels deep", Location(line=line))
        self.stack.append(_Frame(Map(line) if is_map else Seq(line), event.anchor))

    def end(self, event: Any) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.value, frame.size)
        self.total -= frame.size - 1  # its children were counted as they came; count it whole once
        self.add(frame.value, frame.value.line, frame.size)

    def alias(self, event: Any) -> None:
        line = event.start_mark.line + 1
        if event.anchor not in self.anchors:
            raise DocumentError(f"unknown alias *{event.anchor}", Location(line=line))
        value, size = self.anchors[event.anchor]
        self.add(value, line, size)

    def document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            line = event.start_mark.line + 1
            raise DocumentError("more than one document; a config is one document", Location(line=line))
