"""Templates: parameterised blocks a config defines once (`define:`) and uses like catalog types.

A template has integer arguments and a list of layers whose values may be expressions "${...}":
integer arithmetic over its arguments and `in`, the width flowing into an instance. A tokenizer
and a recursive-descent parser of our own read them (integers, names, + - * //, parentheses, min,
max), so nothing else in a config can ever run. The width is known only when the analysis reaches
an instance, so an instance is a layer whose `at_input` builds its block (the template's layers, a
row of the template's type) then, once per width. Its layers' default names are drawn from the
network's numbering when the instance is loaded, in document order, so they read as if the
template's layers had been written out where the instance stands.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
import re
from collections import ChainMap
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, NamedTuple, Protocol

from .document import Map, Seq
from .errors import Location, SchemaError, TemplateError
from .layers import REGISTRY, Arg, Layer, Node, Shape
from .layers.blocks import Sequential
from .layers.schema import brief_arg

RESERVED = ("in", "min", "max")  # names an expression gives a meaning of its own
MAX_EXPR_NESTING = 100  # parentheses, signs and calls inside one another; deeper is refused
# blocks and templates inside one template's layers: the analysis recurses once per level, and a
# config's own blocks may nest 100 deep around an instance
MAX_TEMPLATE_DEPTH = 50
_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z_0-9]*)|(//|[-+*(),])|(\S))")


# -- expressions ----------------------------------------------------------------------------------


class ExprError(Exception):
    """An expression that cannot be read or evaluated; the caller adds the template and location."""


class Expr(NamedTuple):
    """A compiled "${...}": its text and its code in postfix order (evaluated with a stack, so a
    long chain like 1+1+...+1 needs no recursion)."""

    text: str
    code: tuple[tuple[str, Any], ...]  # ("int", 3) ("name", "in") ("op", "+") ("call", ("min", 2))

    @property
    def names(self) -> set[str]:
        """The argument names (and `in`) the expression reads."""
        return {value for kind, value in self.code if kind == "name"}

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The expression's integer value for the names in env; raises ExprError."""
        stack: list[int] = []
        for kind, value in self.code:
            if kind == "int":
                stack.append(value)
            elif kind == "name":
                stack.append(env[value])
            elif kind == "neg":
                stack.append(-stack.pop())
            elif kind == "call":
                func, n = value
                args = stack[-n:]
                del stack[-n:]
                stack.append(min(args) if func == "min" else max(args))
            else:
                b, a = stack.pop(), stack.pop()
                stack.append(_apply(value, a, b, self.text))
        return stack[0]


def _apply(op: str, a: int, b: int, text: str) -> int:
    """a op b in Python's integer arithmetic (// floors, as Python's does)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExprError(f"{text} divides by zero ({a} // 0)")
    return a // b


def _is_name(text: str) -> bool:
    """Whether text is a name: an ASCII letter or _, then letters, digits and _."""
    return text.isascii() and text.isidentifier()


def parse_expr(text: str) -> Expr:
    """'${in * expand}' -> an Expr; raises ExprError naming what could not be read and where."""
    if len(text) < 3 or not text.startswith("${") or not text.endswith("}"):
        raise ExprError(f"{text!r} is not an expression: write the whole value as ${{...}}")
    parser = _Parser(text[2:-1], text)
    parser.expression(0)
    if parser.peek() is not None:
        parser.fail("expected an operator or the end")
    return Expr(text, tuple(parser.code))


class _Parser:
    """Recursive descent over tokens, emitting postfix code:
    expression = term (('+' | '-') term)*;  term = unary (('*' | '//') unary)*;
    unary = ('-' | '+') unary | atom;  atom = INT | NAME | ('min' | 'max') '(' args ')' | '(' expression ')'.
    A sign binds tighter than * and //, as in Python (-7 // 2 is -4)."""

    def __init__(self, body: str, text: str) -> None:
        self.text = text
        self.tokens = list(self._tokens(body))
        self.at = 0
        self.code: list[tuple[str, Any]] = []

    def _tokens(self, body: str) -> Iterator[tuple[str, Any, int]]:
        for match in _TOKEN.finditer(body):
            number, name, op, other = match.groups()
            where = match.start(match.lastindex or 0) + 2  # a position in the whole "${...}" text
            if other is not None:
                hint = " (integer division is //)" if other == "/" else ""
                raise ExprError(f"cannot read {self.text}: unexpected {other!r} at position {where}{hint}")
            if number is not None:
                yield "int", int(number), where
            elif name is not None:
                yield "name", name, where
            elif op is not None:
                yield "op", op, where

    def peek(self) -> tuple[str, Any, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take_op(self, *ops: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in ops:
            self.at += 1
            return token[1]
        return None

    def fail(self, expected: str) -> None:
        token = self.peek()
        found = f"{token[1]!r} at position {token[2]}" if token else "the end"
        raise ExprError(f"cannot read {self.text}: {expected}, found {found}")

    def expression(self, depth: int) -> None:
        if depth > MAX_EXPR_NESTING:
            raise ExprError(f"cannot read {self.text}: nested more than {MAX_EXPR_NESTING} deep")
        self.term(depth)
        while (op := self.take_op("+", "-")) is not None:
            self.term(depth)
            self.code.append(("op", op))

    def term(self, depth: int) -> None:
        self.unary(depth)
        while (op := self.take_op("*", "//")) is not None:
            self.unary(depth)
            self.code.append(("op", op))

    def unary(self, depth: int) -> None:
        signs = []
        while (op := self.take_op("-", "+")) is not None:  # a loop: "- - - 1" needs no recursion
            signs.append(op)
        self.atom(depth)
        self.code.extend(("neg", None) for op in signs if op == "-")

    def atom(self, depth: int) -> None:
        token = self.peek()
        if token is None or (token[0] == "op" and token[1] != "("):
            self.fail("expected a number, a name or '('")
        assert token is not None
        self.at += 1
        kind, value, _ = token
        if kind == "int":
            self.code.append(("int", value))
        elif kind == "op":  # "("
            self.expression(depth + 1)
            if self.take_op(")") is None:
                self.fail("expected ')'")
        elif value in ("min", "max"):
            self.call(value, depth)
        else:
            self.code.append(("name", value))

    def call(self, func: str, depth: int) -> None:
        if self.take_op("(") is None:
            self.fail(f"expected '(' after {func}")
        count = 0
        while True:
            self.expression(depth + 1)
            count += 1
            if self.take_op(")") is not None:
                break
            if self.take_op(",") is None:
                self.fail("expected ',' or ')'")
        if count < 2:
            raise ExprError(f"cannot read {self.text}: {func} takes two or more values")
        self.code.append(("call", (func, count)))


# -- templates ------------------------------------------------------------------------------------


class Integer:
    """A template argument's converter: an integer (expressions compute with integers only)."""

    def __init__(self, template: str) -> None:
        self.template = template

    def __call__(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            shown = repr(value) if isinstance(value, str) else value
            raise SchemaError(f"expected an integer (template {self.template}'s arguments are integers), got {shown}",
                              value=value)
        return value


class Event(NamedTuple):
    """One entry of a template's layers as the network's naming sees it, in document order:
    its type and the name it was given (None: a default name is drawn)."""

    type_name: str
    given: str | None


class Template:
    """One `define:` entry: argument schema, the layers with their expressions compiled, and the
    naming events of those layers (nested templates' included)."""

    def __init__(self, name: str, args: tuple[Arg, ...], layers: Any, line: int | None) -> None:
        self.name = name
        self.args = args
        self.layers = layers  # the raw layer list, each "${...}" replaced by its Expr
        self.line = line
        self.events: list[Event] = []  # filled once every template is known
        self.width_dim = 1  # the dim `in` reads of a 3-D input: channels (1) or the last (-1)
        # the block an instance becomes: a group of the template's layers, typed by its name,
        # whose arguments are the template's (the arguments column shows them)
        self.block = type(f"Template_{name}", (Block,), {
            "type_name": name, "summary": f"the template {name}", "template": self,
        })

    def env(self, values: Mapping[str, Any], x: Shape) -> dict[str, int]:
        """The names an expression may read: the arguments and `in`, the width of input x."""
        width = x[-1] if len(x) <= 2 or self.width_dim == -1 else x[1]
        return {**values, "in": width}


class Definitions:
    """A config's templates, and how their layers are turned into nodes (the loader's parser)."""

    def __init__(self, templates: dict[str, Template], parse: "BodyParser") -> None:
        self.templates = templates
        self.parse = parse

    def types(self, names: "Naming") -> Mapping[str, Any]:
        """Type name -> what builds a layer of it: the catalog's classes and, drawing their layers'
        default names from `names`, the templates (a view: the catalog imports only the types looked up)."""
        return ChainMap({n: InstanceType(t, self, names) for n, t in self.templates.items()}, REGISTRY)


if TYPE_CHECKING:  # what the loader hands in, as the type checker sees it (no class to build at run time)

    class Naming(Protocol):
        """The loader's default-name numbering (config.Names)."""

        def default(self, type_name: str) -> str: ...

        def given(self, name: str) -> None: ...

    class BodyParser(Protocol):
        """The loader's entry parser for a template's layers, drawing default names from `planned`."""

        def __call__(self, definitions: Definitions, layers: Any, where: str, line: int | None,
                     planned: list[str], frozen: str | None) -> list[Node]: ...


class InstanceType:
    """What the loader looks a template's name up as: its type name and arguments, and a builder
    that draws the default names of the template's layers (document order) as it makes an instance."""

    def __init__(self, template: Template, definitions: Definitions, names: "Naming") -> None:
        self.template, self.definitions, self.names = template, definitions, names
        self.type_name = template.name
        self.args = template.args

    def is_block(self) -> bool:
        return False

    def __call__(self, **values: Any) -> "Instance":
        planned = []
        for event in self.template.events:
            if event.given is None:
                planned.append(self.names.default(event.type_name))
            else:
                self.names.given(event.given)
        return Instance(self.template, self.definitions, values, planned)


class Instance(Layer):
    """A template used in a config: its arguments; its block is built when its input is known."""

    def __init__(self, template: Template, definitions: Definitions, values: dict[str, Any], planned: list[str]) -> None:
        # the arguments stay in a mapping: as attributes, one named like a method would hide it
        self.type_name = template.name  # type: ignore[misc]  # the row's type is the template's name
        self.template, self.definitions = template, definitions
        self.values = {a.name: values.get(a.name, a.default) for a in template.args}
        self.planned = planned  # the default names of the template's layers, drawn when loaded
        self.built: dict[tuple[int, bool], Layer] = {}  # (width, trainable) -> its block

    def at_input(self, node: Node, x: Shape) -> Node:
        """The instance as it runs on x: a block of the template's layers with `in` = x's width."""
        env = self.template.env(self.values, x)
        key = (env["in"], node.trainable)
        if key not in self.built:
            self.built[key] = self._build(node, env)
        return node._replace(layer=self.built[key])

    def _build(self, node: Node, env: dict[str, int]) -> Layer:
        t = self.template
        where = f"{node.loc.where}.{t.name}.layers" if node.loc.where else f"{t.name}.layers"
        try:
            layers = substitute(t.layers, env)
            frozen = None if node.trainable else node.label
            nodes = self.definitions.parse(self.definitions, layers, where, t.line, list(self.planned), frozen)
        except ExprError as exc:
            raise TemplateError(f"template {t.name}: {exc}", value=dict(env)) from None
        except SchemaError as exc:
            raise TemplateError(f"template {t.name}: {_inside(exc, t, node.loc.where)}", value=exc.value) from None
        return t.block(self.values, layers=nodes)


class Block(Sequential):
    """What an instance becomes for one input width: a group of the template's layers, its row
    typed by the template's name, its arguments column the instance's arguments."""

    template: Template

    def __init__(self, values: dict[str, int], layers: list[Node]) -> None:
        super().__init__(layers=layers)
        self.values = values

    def brief(self, x: Shape, y: Shape) -> str:
        values = self.values
        # as a catalog layer's column: the required arguments and those away from their default
        shown = [a for a in self.template.args if a.required or values[a.name] != a.default]
        return " ".join(brief_arg(a, values[a.name]) for a in shown)


def _inside(exc: SchemaError, template: Template, prefix: str) -> str:
    """A template layer's error, said from the instance: which layer, on which line of the template,
    and the expression that gave the value."""
    where = exc.loc.where.removeprefix(f"{prefix}.") if prefix else exc.loc.where
    where = f"{where} ({exc.loc.layer})" if exc.loc.layer else where
    exprs = [e.text for e, at in _exprs(template.layers, template.line) if at == exc.loc.line]
    source = f" (from {', '.join(exprs)})" if exprs else ""
    line = f", line {exc.loc.line}" if exc.loc.line else ""
    return f"{where}{line}: {exc.message}{source}"


def substitute(value: Any, env: Mapping[str, int]) -> Any:
    """A copy of a template's layers with every Expr replaced by its value (lines kept)."""
    if isinstance(value, Expr):
        return value.evaluate(env)
    if isinstance(value, Map):
        out = Map(value.line)
        out.key_lines = value.key_lines
        for k, v in value.items():
            out[k] = substitute(v, env)
        return out
    if isinstance(value, dict):
        return {k: substitute(v, env) for k, v in value.items()}
    if isinstance(value, Seq):
        seq = Seq(value.line)
        seq.item_lines = value.item_lines
        seq.extend(substitute(v, env) for v in value)
        return seq
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    return value


def _exprs(value: Any, line: int | None) -> Iterator[tuple[Expr, int | None]]:
    """Every Expr in a template's layers with the line it stands on."""
    if isinstance(value, Expr):
        yield value, line
    elif isinstance(value, dict):
        lines = getattr(value, "key_lines", {})
        for k, v in value.items():
            yield from _exprs(v, lines.get(k, line))
    elif isinstance(value, list):
        lines = getattr(value, "item_lines", None)
        for i, v in enumerate(value):
            yield from _exprs(v, lines[i] if lines else line)


# -- reading `define:` ----------------------------------------------------------------------------


def define(raw: Any, line: int | None, parse: "BodyParser", entry_keys: Iterable[str]) -> Definitions:
    """The `define:` mapping -> the config's templates; raises SchemaError naming the template."""
    if not isinstance(raw, dict):
        raise SchemaError("define must map template names to {args: ..., layers: [...]}",
                          Location(line=line, where="define"), raw)
    key_lines = getattr(raw, "key_lines", {})
    templates: dict[str, Template] = {}
    for name, spec in raw.items():
        template = _template(name, spec, key_lines.get(name, line))
        if template.name in templates:  # type names are case-insensitive
            raise SchemaError(f"template {name!r} is defined twice (type names ignore case)",
                              Location(line=key_lines.get(name, line), where=f"define.{name}"), name)
        templates[template.name] = template
    _Linker(templates, tuple(entry_keys)).link()
    return Definitions(templates, parse)


def _template(name: Any, spec: Any, line: int | None) -> Template:
    """One template's name, arguments and layers, checked; its expressions compiled."""
    where = f"define.{name}"
    loc = Location(line=line, where=where)
    if not isinstance(name, str) or not _is_name(name):
        raise SchemaError(f"a template name is a word of letters, digits and _, got {name!r}", loc, name)
    key = name.lower()
    if key in REGISTRY:
        raise SchemaError(f"template {name!r} shadows the catalog type {key}; choose another name", loc, name)
    if not isinstance(spec, dict):
        raise SchemaError(f"template {name}: expected a mapping with args and layers", loc, spec)
    lines = getattr(spec, "key_lines", {})
    for k in spec:
        if k not in ("args", "layers"):
            raise SchemaError(f"template {name}: unknown key {k!r} (a template has args and layers)",
                              Location(line=lines.get(k, line), where=where), k)
    if "layers" not in spec:
        raise SchemaError(f"template {name}: missing 'layers' (a list of layer entries)", loc)
    args = _args(name, spec.get("args"), Location(line=lines.get("args", line), where=f"{where}.args"))
    layers = spec["layers"]
    layers_line = lines.get("layers", line)
    if not isinstance(layers, list) or not layers:
        raise SchemaError(f"template {name}: layers must be a non-empty list of layers",
                          Location(line=layers_line, where=f"{where}.layers"), layers)
    allowed = {a.name for a in args} | {"in"}
    return Template(key, args, _compile(layers, layers_line, key, allowed), layers_line)


def _args(template: str, raw: Any, loc: Location) -> tuple[Arg, ...]:
    """{name: default or null (required)} -> the instance's argument schema."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise SchemaError(f"template {template}: args must map names to defaults (null = required)", loc, raw)
    lines = getattr(raw, "key_lines", {})
    args = []
    integer = Integer(template)
    for name, default in raw.items():
        at = loc._replace(line=lines.get(name, loc.line))
        if not isinstance(name, str) or not _is_name(name) or name in RESERVED:
            why = "means something of its own in an expression" if name in RESERVED else "is not a name"
            raise SchemaError(f"template {template}: argument {name!r} {why}", at, name)
        if default is None:
            args.append(Arg(name, integer, doc="required"))
            continue
        try:
            args.append(Arg(name, integer, integer(default)))
        except SchemaError as exc:
            raise SchemaError(f"template {template}: argument {name}'s default: {exc.message}", at, default) from None
    return tuple(args)


def _compile(value: Any, line: int | None, template: str, allowed: set[str]) -> Any:
    """A template's layers with each "${...}" string compiled to an Expr whose names are known."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        try:
            expr = parse_expr(value.strip())
        except ExprError as exc:
            raise SchemaError(f"template {template}: {exc}", Location(line=line, where=f"define.{template}"),
                              value) from None
        for name in sorted(expr.names - allowed):
            hint = _hint(name, sorted(allowed)) or f" (known: {', '.join(sorted(allowed))})"
            raise SchemaError(f"template {template}: unknown name {name!r} in {value}{hint}",
                              Location(line=line, where=f"define.{template}"), name)
        return expr
    if isinstance(value, dict):
        lines = getattr(value, "key_lines", {})
        out = Map(getattr(value, "line", line) or 0)
        out.key_lines = dict(lines)
        for k, v in value.items():
            out[k] = _compile(v, lines.get(k, line), template, allowed)
        return out
    if isinstance(value, list):
        item_lines = getattr(value, "item_lines", None)
        seq = Seq(getattr(value, "line", line) or 0)
        seq.item_lines = list(item_lines) if item_lines else [line or 0] * len(value)
        seq.extend(_compile(v, seq.item_lines[i], template, allowed) for i, v in enumerate(value))
        return seq
    return value


def _hint(word: str, options: Iterable[str]) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    import difflib  # only on the way to an error message

    close = difflib.get_close_matches(word.lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class _Walk:
    """What following one template's layers found."""

    def __init__(self) -> None:
        self.events: list[Event] = []  # naming events in document order
        self.dims: list[int] = []  # feature dims of its sized layers, in order (the first decides `in`)
        self.depth = 0  # blocks and templates inside one another, the deepest


class _Linker:
    """Follows each template's layers in document order: the naming events (nested templates'
    inline), the layout `in` reads, unknown layer types, templates that use themselves and how
    deep blocks and templates nest (the analysis recurses once per level)."""

    def __init__(self, templates: dict[str, Template], entry_keys: tuple[str, ...]) -> None:
        self.templates = templates
        self.entry_keys = entry_keys
        self.done: dict[str, _Walk] = {}

    def link(self) -> None:
        for template in self.templates.values():
            self.visit(template, [])

    def visit(self, template: Template, stack: list[str], line: int | None = None) -> _Walk:
        """Link a template (once); `line` is where the template using it names it."""
        if template.name in stack:
            start = stack[stack.index(template.name)]
            cycle = " -> ".join([*stack[stack.index(template.name):], template.name])
            raise SchemaError(f"template {start} uses itself ({cycle}); a template cannot recurse",
                              Location(line=line or template.line, where=f"define.{stack[-1]}"), template.name)
        if len(stack) > MAX_TEMPLATE_DEPTH:  # stop before the walk's own recursion gets that deep
            raise SchemaError(f"template {stack[0]}: templates nested more than {MAX_TEMPLATE_DEPTH} deep",
                              Location(line=line, where=f"define.{stack[-1]}"), template.name)
        if template.name not in self.done:
            walk = _Walk()
            self.entries(template, template.layers, template.line, walk, [*stack, template.name], 1)
            if walk.depth > MAX_TEMPLATE_DEPTH:
                raise SchemaError(f"template {template.name}: blocks and templates nested more than {MAX_TEMPLATE_DEPTH}"
                                  " deep", Location(line=template.line, where=f"define.{template.name}"), template.name)
            template.events = walk.events
            template.width_dim = walk.dims[0] if walk.dims else 1
            self.done[template.name] = walk
        return self.done[template.name]

    def entries(self, template: Template, items: Any, line: int | None, walk: _Walk, stack: list[str], depth: int) -> None:
        """Walk a list of entries as the loader will parse it (malformed ones are its to report)."""
        if not isinstance(items, list):
            return
        lines = getattr(items, "item_lines", None)
        for i, item in enumerate(items):
            self.entry(template, item, lines[i] if lines else line, walk, stack, depth)

    def entry(self, template: Template, item: Any, line: int | None, walk: _Walk, stack: list[str], depth: int) -> None:
        """One entry: its naming event, then what it holds (an instance: its template's layers)."""
        keys = [item] if isinstance(item, str) else [k for k in item if k not in self.entry_keys] \
            if isinstance(item, dict) else []
        walk.depth = max(walk.depth, depth)
        if len(keys) != 1 or not isinstance(keys[0], str) or depth > MAX_TEMPLATE_DEPTH:
            return  # deeper is refused when the walk is over
        type_key = keys[0]
        name = item.get("name") if isinstance(item, dict) else None
        given = name if isinstance(name, str) else None
        inner = self.templates.get(type_key.lower())
        cls = REGISTRY.get(type_key.lower())
        type_name = inner.name if inner else cls.type_name if cls else None
        if type_name is None:
            raise SchemaError(f"template {template.name}: unknown layer type {type_key!r}"
                              f"{_hint(type_key, [*REGISTRY, *self.templates])}",
                              Location(line=line, where=f"define.{template.name}"), type_key)
        if not (isinstance(item, dict) and "name" in item) or given is not None:  # a name not a string draws none
            walk.events.append(Event(type_name, given))
        if inner is not None:
            found = self.visit(inner, stack, line)
            walk.events.extend(found.events)
            walk.dims.extend(found.dims[:1])
            walk.depth = max(walk.depth, depth + found.depth)
            return
        if cls.feature_dim is not None:  # type: ignore[union-attr]
            walk.dims.append(cls.feature_dim)  # type: ignore[union-attr]
        raw = item.get(type_key) if isinstance(item, dict) else None
        if not cls.is_block() or not isinstance(raw, dict):  # type: ignore[union-attr]
            return
        nested = {a.name: a.convert.depth for a in cls.args if a.nested}  # type: ignore[union-attr]
        for key, value in raw.items():
            if nested.get(key) == 1:
                self.entries(template, value, line, walk, stack, depth + 1)
            elif nested.get(key) == 2 and isinstance(value, list):
                for branch in value:
                    self.entries(template, branch, line, walk, stack, depth + 1)
