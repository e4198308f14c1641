"""Configs: a parsed document (or a dict) -> a validated Network of layer Nodes.

Layer types are looked up in the registry by name and their arguments checked against each
type's own schema; nothing here knows any particular layer type.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
import os
from typing import Any, Iterable, Mapping, NamedTuple

from . import lora
from .document import Map, Seq, line_of, parse_document, read_source
from .errors import ConfigError, Location, SchemaError
from .layers import REGISTRY, Layer, Node, Shape
from .layers.base import Int
from .templates import Definitions, define

DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
MAX_BLOCK_DEPTH = 100  # blocks inside blocks; deeper is refused rather than risking the stack
TOP_KEYS = ("name", "input", "batch", "dtype", "layers", "define")
ENTRY_KEYS = ("name", "repeat", "trainable", "lora")
TOP_ENTRY_KEYS = (*ENTRY_KEYS, "from")  # `from: NAME` feeds a top-level entry a named input or an earlier entry


class Network(NamedTuple):
    """A validated config: its name, one sample's shape, batch, dtype and top-level nodes."""

    name: str
    input: Shape  # one sample, batch excluded
    batch: int = 1
    dtype: str = "float32"
    nodes: list[Node] = []
    file: str = "<config>"
    # named inputs, in order ((name, one sample's shape), ...): () for a network of one input; then
    # `input` is the shape of the one the first entry reads (its `from:`), which overrides its entry here
    inputs: tuple[tuple[str, Shape], ...] = ()

    @property
    def main_input(self) -> str | None:
        """The name of the input the first entry reads (None for a network of one input)."""
        return self.nodes[0].source if self.inputs and self.nodes else None

    def streams(self) -> dict[str, Shape]:
        """Every named input's shape (one sample), the first entry's being `input`."""
        shapes = dict(self.inputs)
        if self.main_input is not None:
            shapes[self.main_input] = self.input
        return shapes

    def with_input(self, name: str, shape: Shape) -> "Network":
        """The network with one named input's shape replaced."""
        if name == self.main_input:
            return self._replace(input=shape)
        return self._replace(inputs=tuple((k, shape if k == name else v) for k, v in self.inputs))

    @property
    def input_shape(self) -> Shape:
        """The full input shape, batch first."""
        return (self.batch, *self.input)

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of the chosen dtype."""
        return DTYPE_BYTES[self.dtype]


def suggest(word: str, options: Iterable[str]) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    import difflib  # only on the way to an error message

    close = difflib.get_close_matches(str(word).lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_keys(mapping: Map, allowed: Iterable[str], what: str, loc: Location) -> None:
    allowed = tuple(allowed)
    for key in mapping:
        if key not in allowed:
            line = mapping.key_lines.get(key, loc.line)
            raise SchemaError(f"unknown key {key!r} in {what}{suggest(key, allowed)}", Location(line=line), key)


def parse_shape(value: Any, what: str = "input") -> Shape:
    """[3, 224, 224] or "3x224x224" -> (3, 224, 224); 1 to 4 positive integers (up to [C, D, H, W])."""
    items: Any = value
    if isinstance(value, str):
        items = split_sizes(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    ok = isinstance(items, list) and 1 <= len(items) <= 4
    if ok:
        try:
            return tuple(Int()(v) for v in items)
        except SchemaError:
            pass
    shown = value if isinstance(value, str) else list(value) if isinstance(value, list) else value
    raise SchemaError(
        f"{what} must be 1 to 4 positive integers like [3, 224, 224] or \"3x224x224\", got {shown!r}", value=value
    )


def split_sizes(text: str) -> list[int | str]:
    """'3x224x224', '3,224,224' or '[3, 224, 224]' -> [3, 224, 224]: the one reading of sizes written
    as text (--input, kconv's sizes, a --layer value like 3x5). A part that is not plain ASCII digits
    stays a string for the caller's message: int() alone would take '²' for a digit and fail, and
    would read '3_0' as 30."""
    body = text.strip().lower()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    sep = "," if "," in body else "x"
    return [int(p) if p.isascii() and p.isdigit() else p for p in (part.strip() for part in body.split(sep))]


def load(source: str | os.PathLike[str] | dict[str, Any], *, batch: int | None = None, input: Any = None) -> Network:
    """Load a config from a path ('-' = stdin), YAML/JSON text, or a dict; apply overrides."""
    if isinstance(source, dict):
        doc, name, stem = source, "<dict>", "network"
    elif isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        doc, name, stem = parse_document(source, "<string>"), "<string>", "network"
    else:
        text, name = read_source(source)
        stem = "stdin" if name == "stdin" else os.path.splitext(os.path.basename(name))[0]
        doc = parse_document(text, name)
    try:
        if _is_hf(doc):  # a Hugging Face config.json: its network, at --input tokens
            from .hf import document

            doc, _ = document(doc, name, None if input is None else parse_shape(input, "--input"))
            input = None
        net = _network(doc, stem, batch, input)
    except ConfigError as exc:
        raise exc.at(file=name) from None
    return net._replace(file=name)


def _is_hf(doc: Any) -> bool:
    """A Hugging Face config names its model_type and holds no layers."""
    return isinstance(doc, dict) and "model_type" in doc and "layers" not in doc


def _network(doc: Any, stem: str, batch: int | None, input: Any) -> Network:
    if not isinstance(doc, dict):
        raise SchemaError("a config is a mapping with 'input' and 'layers'", Location(line=line_of(doc)))
    top = Location(line=line_of(doc))
    if isinstance(doc, Map):
        _check_keys(doc, TOP_KEYS, "the config", top)
    else:
        for key in doc:
            if key not in TOP_KEYS:
                raise SchemaError(f"unknown key {key!r} in the config{suggest(key, TOP_KEYS)}", top, key)

    def at(key: str) -> Location:
        lines = getattr(doc, "key_lines", {})
        return Location(line=lines.get(key, top.line), where=key)

    def checked(key: str, convert: Any) -> Any:
        try:
            return convert(doc[key])
        except SchemaError as exc:
            if not exc.message.startswith(key):
                exc.message = f"{key}: {exc.message}"
            raise exc.at(line=at(key).line) from None

    if "input" not in doc and (input is None or _named(input)):
        raise SchemaError("missing 'input' (one sample's shape, e.g. [3, 224, 224])", top)
    named: dict[str, Shape] = {}
    if isinstance(doc.get("input"), dict):
        named = checked("input", _named_shapes)
    if input is not None and not _named(input):
        if named:
            raise SchemaError(f"this network has named inputs ({', '.join(named)}): set one with --input NAME=SHAPE",
                              Location(file="--input"), input)
        shape = parse_shape(input, "--input")
    elif not named:
        shape = checked("input", parse_shape)
    if input is not None and _named(input):
        named = _overridden(named, input)
    if batch is not None:
        n = Int()(batch)
    else:
        n = checked("batch", Int()) if "batch" in doc else 1
    dtype = doc.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:  # a list or mapping cannot even be looked up
        raise SchemaError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}", at("dtype"), dtype)
    name = doc.get("name", stem)
    if not isinstance(name, str) or not name:
        raise SchemaError(f"name must be a non-empty string, got {name!r}", at("name"), name)
    if "layers" not in doc:
        raise SchemaError("missing 'layers' (a list of layer entries)", top)
    definitions = define(doc["define"], at("define").line, _template_layers, ENTRY_KEYS) if "define" in doc else None
    nodes = parse_entries(doc["layers"], "layers", at("layers").line, depth=0, names=Names(definitions), top=True)
    if not named:
        return Network(name=name, input=shape, batch=n, dtype=dtype, nodes=nodes)
    _check_sources(nodes, named, at("layers").line)
    first = nodes[0].source
    return Network(name=name, input=named[first], batch=n, dtype=dtype, nodes=nodes, inputs=tuple(named.items()))


def override_input(net: Network, given: Any) -> Network:
    """The network with an --input override applied: NAME=SHAPE items (or a mapping) for named
    inputs, one shape for a network of one unnamed input."""
    named = net.streams()
    if _named(given):
        for key, shape in _overridden(named, given).items():
            net = net.with_input(key, shape)
        return net
    if named:
        raise SchemaError(f"this network has named inputs ({', '.join(named)}): set one with --input NAME=SHAPE",
                          Location(file="--input"), given)
    return net._replace(input=parse_shape(given, "--input"))


def _named(value: Any) -> bool:
    """Whether an --input override names its input: ['audio=80x3000', ...] or {'audio': ...}."""
    if isinstance(value, dict):
        return True
    items = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    return bool(items) and all(isinstance(v, str) and "=" in v for v in items)


def _named_shapes(value: Any) -> dict[str, Shape]:
    """{audio: [80, 3000], tokens: [128]} -> {'audio': (80, 3000), 'tokens': (128,)}."""
    if not value:
        raise SchemaError("a mapping input names at least one input", value=value)
    shapes = {}
    for key, shape in value.items():
        if not isinstance(key, str) or not key or "." in key:
            raise SchemaError(f"an input's name must be a non-empty string without dots, got {key!r}", value=key)
        shapes[key] = parse_shape(shape, f"input {key}")
    return shapes


def _overridden(named: dict[str, Shape], given: Any) -> dict[str, Shape]:
    """The named inputs with --input NAME=SHAPE overrides applied; each name must be one of them."""
    items = given.items() if isinstance(given, dict) else (v.partition("=")[::2] for v in
                                                            ([given] if isinstance(given, str) else given))
    out = dict(named)
    for key, shape in items:
        key = key.strip()
        if key not in named:
            what = f"its inputs are {', '.join(named)}" if named else "it has one unnamed input: give --input SHAPE"
            raise SchemaError(f"the network has no input named {key!r} ({key}=...); {what}",
                              Location(file="--input"), key)
        out[key] = parse_shape(shape, f"--input {key}")
    return out


def _check_sources(nodes: list[Node], named: dict[str, Shape], line: int | None) -> None:
    """With named inputs: the first entry says which it reads; every `from:` names an input or an
    earlier top-level entry; no entry takes an input's name."""
    if nodes[0].source is None:
        raise SchemaError(f"with named inputs ({', '.join(named)}), the first entry names the one it reads with"
                          " from:", nodes[0].loc, None)
    check_source(nodes[0], named)
    for node in nodes:
        if node.name in named:
            raise SchemaError(f"name {node.name!r} is also a named input's; an entry and an input need different"
                              " names", node.loc, node.name)


def check_source(node: Node, known: Iterable[str]) -> None:
    """An entry's `from:` must name a named input or an earlier top-level entry."""
    known = list(known)
    if node.source is not None and node.source not in known:
        raise SchemaError(f"from: {node.source!r} names no input and no earlier top-level entry"
                          f"{suggest(node.source, known)}", node.loc, node.source)


class Names:
    """Default layer names, numbered per type across the whole network (as `--only` selects by name),
    and the types entries may name: the catalog's and the config's templates."""

    def __init__(self, definitions: Definitions | None = None, planned: list[str] | None = None) -> None:
        self.counts: dict[str, int] = {}
        self.taken: set[str] = set()
        self.types: Mapping[str, Any] = REGISTRY if definitions is None else definitions.types(self)
        # a template instance's layers take the default names drawn when the instance was loaded
        self.planned = None if planned is None else iter(planned)

    def default(self, type_name: str) -> str:
        """The next unused '<type><n>'."""
        if self.planned is not None:
            return next(self.planned)
        while True:
            n = self.counts[type_name] = self.counts.get(type_name, 0) + 1
            name = f"{type_name}{n}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def given(self, name: str) -> None:
        """Remember a name the user chose, so no default name repeats it."""
        self.taken.add(name)


def parse_entries(
    items: Any, where: str, line: int | None, depth: int, min_len: int = 1, names: Names | None = None,
    frozen: str | None = None, top: bool = False,
) -> list[Node]:
    """A list of layer entries -> Nodes (recursing into block arguments); sibling names must differ.

    `frozen` names the enclosing block that has `trainable: false` (None: the entries are trainable).
    """
    names = names if names is not None else Names()
    if depth > MAX_BLOCK_DEPTH:
        raise SchemaError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep", Location(line=line, where=where))
    if not isinstance(items, list):
        raise SchemaError(f"{where} must be a list of layers, got {type_word(items)}", Location(line=line, where=where))
    if len(items) < min_len:
        raise SchemaError(f"{where} is empty; it needs at least one layer", Location(line=line_of(items, line), where=where))
    lines = getattr(items, "item_lines", None)
    nodes: list[Node] = []
    siblings: dict[str, int] = {}  # name -> index, as PyTorch's module names are unique among siblings
    for i, item in enumerate(items):
        item_line = lines[i] if lines else line_of(item, line)
        node = parse_entry(item, f"{where}[{i}]", item_line, depth, names, frozen, top)
        if node.name in siblings:
            first = siblings[node.name]
            raise SchemaError(
                f"name {node.name!r} is already used by {where}[{first}]; sibling layers need different names",
                Location(line=node.loc.line, where=node.loc.where, layer=node.loc.layer),
                node.name,
            )
        siblings[node.name] = i
        nodes.append(node)
    return nodes


def type_word(value: Any) -> str:
    """'a mapping', 'a list', 'the string 'x'' ...: what a wrong value is, for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"the number {value}"


def lookup_type(name: Any, loc: Location, types: Mapping[str, Any] = REGISTRY) -> type[Layer]:
    """The layer class registered under a (case-insensitive) type name (or a template's builder)."""
    if not isinstance(name, str):
        raise SchemaError(f"a layer type must be a name, got {type_word(name)}", loc, name)
    cls = types.get(name.lower())
    if cls is None:
        raise SchemaError(f"unknown layer type {name!r}{suggest(name, types)}", loc, name)
    return cls


def parse_entry(
    item: Any, where: str, line: int | None, depth: int, names: Names, frozen: str | None = None, top: bool = False,
) -> Node:
    """One entry: 'relu', or {conv2d: {...}, name: ..., repeat: N, trainable: false} -> a Node
    (a top-level entry may also have `from: NAME`)."""
    keys = TOP_ENTRY_KEYS if top else ENTRY_KEYS
    if isinstance(item, str):
        type_key, raw_args, extra = item, None, {}
    elif isinstance(item, dict):
        if not top and "from" in item and len(item) > 1:
            raise SchemaError("from: is for top-level entries only (a block's layers read the block's input)",
                              Location(line=getattr(item, "key_lines", {}).get("from", line), where=where), "from")
        type_keys = [k for k in item if k not in keys]
        if len(type_keys) != 1:
            found = ", ".join(k if isinstance(k, str) and k.isidentifier() else repr(k) for k in type_keys) or "none"
            raise SchemaError(f"a layer entry needs exactly one type key, found {found}", Location(line=line, where=where), item)
        type_key = type_keys[0]
        raw_args, extra = item[type_key], {k: item[k] for k in keys if k in item}
        if isinstance(item, Map):
            line = item.key_lines.get(type_key, line)
    else:
        raise SchemaError(f"a layer entry is a type name or a mapping, got {type_word(item)}", Location(line=line, where=where), item)
    cls = lookup_type(type_key, Location(line=line, where=where), names.types)
    if "name" in extra:
        name = extra["name"]
        if isinstance(name, str):
            names.given(name)
    else:
        name = names.default(cls.type_name)
    loc = Location(line=line, where=where, layer=f"{cls.type_name} {name!r}")
    try:
        if not isinstance(name, str) or not name or "." in name:
            raise SchemaError(f"name must be a non-empty string without dots, got {name!r}", value=name)
        repeat = Int()(extra["repeat"]) if "repeat" in extra else 1
        trainable = _trainable(extra, item, frozen)
        # the block whose trainable: false the children inherit: an enclosing one, or this one
        inner = frozen or (None if trainable else f"{cls.type_name} {name!r}")
        layer = cls(**parse_args(cls, raw_args, where, line, depth, names, inner))
        node = Node(layer=layer, name=name, repeat=repeat, loc=loc, named="name" in extra, trainable=trainable)
        if "lora" in extra:  # rank-r adapters on the linear maps under this entry
            spec = lora.parse(extra["lora"], getattr(item, "key_lines", {}).get("lora", line), loc.layer)
            node = lora.adapt(node, spec._replace(loc=spec.loc._replace(where=where)))
    except ConfigError as exc:
        raise exc.at(line=loc.line, where=loc.where, layer=loc.layer) from None
    source = extra.get("from")
    if source is not None and (not isinstance(source, str) or not source):
        raise SchemaError(f"from must name an input or an earlier entry, got {type_word(source)}", loc, source)
    return node if source is None else node._replace(source=source)


def _trainable(extra: dict[str, Any], item: Any, frozen: str | None) -> bool:
    """An entry's `trainable` (default true) after its enclosing blocks': a frozen block freezes everything inside."""
    if "trainable" not in extra:
        return frozen is None
    value = extra["trainable"]
    line = getattr(item, "key_lines", {}).get("trainable")
    if not isinstance(value, bool):
        raise SchemaError(f"trainable must be true or false, got {type_word(value)}", Location(line=line), value)
    if value and frozen is not None:
        # requires_grad is set on a block's parameters all at once; a child cannot opt back in
        raise SchemaError(
            f"trainable: true inside {frozen}, which has trainable: false and so freezes everything inside it",
            Location(line=line), value,
        )
    return value


def _template_layers(
    definitions: Definitions, layers: Any, where: str, line: int | None, planned: list[str], frozen: str | None
) -> list[Node]:
    """A template instance's layers (its expressions already evaluated), named as drawn at load."""
    return parse_entries(layers, where, line, 0, names=Names(definitions, planned), frozen=frozen)


def parse_args(
    cls: type[Layer], raw: Any, where: str, line: int | None, depth: int, names: Names, frozen: str | None = None
) -> dict[str, Any]:
    """Validate a layer's argument mapping against its schema (nested layer lists parsed too)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SchemaError(f"arguments must be a mapping, got {type_word(raw)}", value=raw)
    schema = {a.name: a for a in cls.args}
    key_lines = getattr(raw, "key_lines", {})
    values: dict[str, Any] = {}
    for key, value in raw.items():
        arg = schema.get(key)
        key_line = key_lines.get(key, line)
        if arg is None:
            hint = suggest(key, schema) or (f" ({cls.type_name} takes no arguments)" if not schema else "")
            raise SchemaError(f"unknown argument {key!r}{hint}", Location(line=key_line), key)
        if arg.nested:
            values[key] = _parse_nested(arg, value, f"{where}.{key}", key_line, depth, names, frozen)
            continue
        try:
            values[key] = arg.convert(value)
        except SchemaError as exc:
            exc.message = f"{key}: {exc.message}"
            raise exc.at(line=key_line) from None
    for arg in cls.args:
        if arg.required and arg.name not in values:
            raise SchemaError(f"missing required argument '{arg.name}'")
    return values


def _parse_nested(
    arg: Any, value: Any, where: str, line: int | None, depth: int, names: Names, frozen: str | None = None
) -> Any:
    """A block's layer list (depth 1) or list of branch lists (depth 2)."""
    spec = arg.convert
    if spec.depth == 1:
        return parse_entries(value, where, line, depth + 1, spec.min_len, names, frozen)
    if not isinstance(value, list) or len(value) < spec.min_len:
        raise SchemaError(f"{where} must be a non-empty list of layer lists", Location(line=line, where=where), value)
    lines = getattr(value, "item_lines", None)
    return [
        parse_entries(branch, f"{where}[{i}]", lines[i] if lines else line, depth + 1, min_len=0, names=names, frozen=frozen)
        for i, branch in enumerate(value)
    ]


def inline_network(specs: list[str], input: Any, batch: int | None = None, name: str = "cli") -> Network:
    """A network from command-line layer specs: ['conv2d:out_channels=64,kernel_size=7', 'relu'].

    Errors name the file '--layer' and, as the line, the position of the offending --layer option.
    """
    from .document import resolve_plain

    if input is None:
        raise ConfigError("--layer needs --input (one sample's shape, e.g. 3x224x224)", Location(file="--layer"))
    layers = Seq(line=1)
    for i, spec in enumerate(specs, 1):
        head, _, tail = spec.partition(":")
        entry, args = Map(line=i), Map(line=i)
        for part in _split_top(tail):
            key, eq, raw = (s.strip() for s in part.partition("="))
            if not eq or not key:
                raise SchemaError(
                    f"cannot read {part!r} in {spec!r}: expected key=value pairs after 'type:'",
                    Location(file="--layer", line=i, where=f"layers[{i - 1}]"),
                    spec,
                )
            target = entry if key in ENTRY_KEYS else args
            if key in target:  # as a config file refuses a duplicate key, not keeping the last silently
                raise SchemaError(
                    f"duplicate key {key!r} in {spec!r}", Location(file="--layer", line=i, where=f"layers[{i - 1}]"), key,
                )
            target[key] = _inline_value(raw, resolve_plain)
            target.key_lines[key] = i
        entry[head.strip()] = args or None
        entry.key_lines[head.strip()] = i
        layers.append(entry)
        layers.item_lines.append(i)
    try:
        net = _network({"name": name, "layers": layers}, name, batch, input)
    except ConfigError as exc:
        raise exc.at(file="--layer") from None
    return net._replace(file="--layer")


def _split_top(text: str) -> list[str]:
    """Split 'a=1,b=[3,3]' on the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _inline_value(raw: str, resolve: Any) -> Any:
    if raw.startswith("[") and raw.endswith("]"):
        return [resolve(v.strip()) for v in raw[1:-1].split(",") if v.strip()]
    sizes = split_sizes(raw)  # 3x5: sizes per dim, as --input writes them
    if len(sizes) > 1 and all(isinstance(v, int) for v in sizes):
        return sizes
    return resolve(raw)
