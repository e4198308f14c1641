"""Reading a config document (YAML or JSON) into plain values that remember their line numbers.

The document is built from the YAML event stream (libyaml's C parser when present) by a loop
with an explicit stack, not by PyYAML's recursive composer, so that:
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
import json
import os
import re
import sys
from typing import Any, Iterator

import yaml

from .errors import DocumentError, Location

MAX_BYTES = 64 * 1024 * 1024  # a config is a few KB; 64 MiB is 100x the largest sane one
MAX_NODES = 5_000_000  # values after alias expansion
MAX_NESTING = 10_000  # mapping/list levels

try:  # libyaml's C parser is 10x faster; the pure-Python one behaves the same
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


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
_INT = re.compile(r"[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOAT = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
_CORE = "tag:yaml.org,2002:"


@functools.lru_cache(maxsize=4096)  # configs repeat the same few words thousands of times
def resolve_plain(text: str) -> Any:
    """A plain (unquoted) scalar's value: null, bool, int, float or the string itself."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text, 0) if text.lstrip("+-")[:2] in ("0x", "0o") else int(text.replace("_", ""))
    if _FLOAT.match(text):
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
    try:
        text = data.decode(encoding or "utf-8-sig")
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
    text, such as YAML's own flow style `{input: [3], layers: [relu]}`, is YAML.
    """
    if name.lower().endswith(".json") or text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        try:
            return _build(_json_events(text))
        except DocumentError as exc:
            if name.lower().endswith(".json"):
                raise exc.at(file=name) from None
    try:
        return _build(yaml.parse(text, Loader=_Loader))
    except DocumentError as exc:
        raise exc.at(file=name) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if mark and _tab_at(text, mark.index):
            # libyaml only says "found character that cannot start any token"
            raise DocumentError(
                "invalid YAML: a tab indents this line; YAML indents with spaces only", Location(file=name, line=line)
            ) from None
        what = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise DocumentError(f"invalid YAML: {what}", Location(file=name, line=line)) from None
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        raise DocumentError(f"invalid YAML: character {char!r} is not allowed", Location(file=name, line=line)) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {' '.join(str(exc).split())}", Location(file=name)) from None
    except RecursionError:  # pragma: no cover - the loop below keeps its own stack
        raise DocumentError("nested too deeply", Location(file=name)) from None


class _Mark:
    """Where a JSON value starts, as a YAML event's start_mark carries it (0-based line)."""

    __slots__ = ("line",)

    def __init__(self, line: int) -> None:
        self.line = line


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_JSON_WORD = re.compile(r"true|false|null")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_events(text: str) -> Iterator[Any]:
    """A JSON document as the YAML events _build folds: strings as quoted scalars (always str),
    numbers and true/false/null as plain ones (resolved as YAML 1.2's core schema reads them,
    which agrees with JSON). Iterative, so nesting depth costs no Python stack."""
    scanner = _JsonScanner(text.removeprefix("\ufeff"))
    yield yaml.StreamStartEvent()
    yield yaml.DocumentStartEvent(start_mark=scanner.mark(0))
    step = {"key": scanner.key, "value": scanner.value, "close": scanner.close, "next": scanner.next}
    while scanner.expect != "end":
        yield from step[scanner.expect]()
    yield yaml.DocumentEndEvent()
    yield yaml.StreamEndEvent()


class _JsonScanner:
    """A JSON text read token by token; `expect` names what may come next (key, value, close, next, end)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.closers: list[str] = []  # "}" or "]" of each open container
        self.pos, self.expect = self.space(0), "value"

    def mark(self, pos: int) -> _Mark:
        return _Mark(bisect.bisect_left(self.newlines, pos))

    def fail(self, message: str, pos: int) -> DocumentError:
        return DocumentError(f"invalid JSON: {message}", Location(line=self.mark(pos).line + 1))

    def space(self, pos: int) -> int:
        return _JSON_SPACE.match(self.text, pos).end()  # type: ignore[union-attr]

    def char(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def string(self, pos: int) -> tuple[str, int]:
        try:
            value, end = json.decoder.scanstring(self.text, pos + 1, True)
        except json.JSONDecodeError as exc:
            raise self.fail(exc.msg.lower(), exc.pos) from None
        lone = _SURROGATE.search(value)
        if lone:  # a pair has been joined into one character; half of one is no character at all
            raise self.fail(f"\\u{ord(lone.group()):04x} is half of a UTF-16 surrogate pair, not a character", pos)
        return value, end

    def key(self) -> Iterator[Any]:
        if self.char() != '"':
            raise self.fail(f"expected a key in double quotes, found {_found(self.char())}", self.pos)
        key, pos = self.string(self.pos)
        yield yaml.ScalarEvent(None, None, (False, True), key, start_mark=self.mark(pos), style='"')
        pos = self.space(pos)
        if self.text[pos : pos + 1] != ":":
            raise self.fail(f"expected ':' after the key {key!r}", pos)
        self.pos, self.expect = self.space(pos + 1), "value"

    def value(self) -> Iterator[Any]:
        ch, pos = self.char(), self.pos
        if ch in ("{", "["):
            start = yaml.MappingStartEvent if ch == "{" else yaml.SequenceStartEvent
            yield start(None, None, True, start_mark=self.mark(pos), flow_style=True)
            self.closers.append("}" if ch == "{" else "]")
            self.pos = self.space(pos + 1)
            if self.char() == self.closers[-1]:
                self.expect = "close"
            else:
                self.expect = "key" if ch == "{" else "value"
            return
        if ch == '"':
            value, end = self.string(pos)
            yield yaml.ScalarEvent(None, None, (False, True), value, start_mark=self.mark(pos), style='"')
        else:
            token = _JSON_NUMBER.match(self.text, pos) or _JSON_WORD.match(self.text, pos)
            if token is None:
                raise self.fail(f"expected a value, found {_found(ch)}", pos)
            yield yaml.ScalarEvent(None, None, (True, False), token.group(), start_mark=self.mark(pos))
            end = token.end()
        self.pos, self.expect = self.space(end), "next"

    def close(self) -> Iterator[Any]:
        """A container's closing bracket."""
        yield (yaml.MappingEndEvent if self.closers.pop() == "}" else yaml.SequenceEndEvent)()
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


def _build(events: Any) -> Any:
    """Fold a YAML event stream into located values, with an explicit stack."""
    builder = _Builder()
    handlers = {
        yaml.ScalarEvent: builder.scalar, yaml.MappingStartEvent: builder.start,
        yaml.SequenceStartEvent: builder.start, yaml.MappingEndEvent: builder.end,
        yaml.SequenceEndEvent: builder.end, yaml.AliasEvent: builder.alias,
        yaml.DocumentStartEvent: builder.document,
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

    def start(self, event: Any) -> None:
        line = event.start_mark.line + 1
        is_map = type(event) is yaml.MappingStartEvent
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
