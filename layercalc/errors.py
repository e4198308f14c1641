"""Exception classes: each carries where the problem is (file, line, layer) and what was wrong.

The core raises these; the command line turns them into one-line messages, once.
"""

# No `from __future__ import annotations` here: typing.NamedTuple would compile each string annotation,
# and a process's first compile() builds every class of the ast module (tests/test_startup.py).
from typing import Any, NamedTuple

# exit statuses of the `layercalc` command: a failed check is 1, a usage or config error 2, an
# internal error 70 (EX_SOFTWARE), stdout unwritable 74 (EX_IOERR), a signal 128 + its number
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_OUTPUT = 0, 1, 2, 70, 74
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Location(NamedTuple):
    """Where in a config something stands: file name, 1-based line, config path, layer label."""

    file: str = "<config>"
    line: int | None = None
    where: str = ""  # config path, e.g. "layers[5].body[0]"
    layer: str = ""  # e.g. "conv2d 'conv1'"

    def __str__(self) -> str:
        head = f"{self.file}:{self.line}" if self.line else self.file
        parts = [head]
        if self.where:
            parts.append(f"{self.where} ({self.layer})" if self.layer else self.where)
        return ": ".join(parts)


class LayercalcWarning(UserWarning):
    """Something a user should know that does not stop the command (one line on stderr)."""


class LayercalcError(Exception):
    """Base class of every error layercalc reports to a user (exit status 2)."""


class ConfigError(LayercalcError):
    """A config (or command-line override) that cannot be used; carries its location and the value at fault.

    `value` is what the message calls wrong, as the loader or the layer holds it: a key or an
    argument (a kernel_size as its per-dim tuple), a mapping of the arguments that conflict, the
    pair of shapes that do not match, or the input shape a layer refuses; None when no value is at
    fault (a missing key, an unreadable file). The command line prints the message, which states
    the value in words; `details()` gives it as data, for programs that use the Python API.
    """

    def __init__(self, message: str, loc: Location | None = None, value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc or Location()
        self.value = value

    def details(self) -> dict[str, Any]:
        """The error as JSON-ready data: file, line, where, layer, message and value (tuples as lists)."""
        return {
            "file": self.loc.file, "line": self.loc.line, "where": self.loc.where, "layer": self.loc.layer,
            "message": self.message, "value": _plain(self.value),
        }

    def at(self, **fields: object) -> "ConfigError":
        """Return the same error with location fields filled in where still empty."""
        current = self.loc
        updates = {k: v for k, v in fields.items() if v and not getattr(current, k)}
        if "file" in fields and current.file == "<config>":
            updates["file"] = fields["file"]
        self.loc = current._replace(**updates)
        return self

    def __str__(self) -> str:
        return one_line(f"{self.loc}: {self.message}")


def _plain(value: object) -> Any:
    """A value as JSON data: tuples and lists as lists, mappings with string keys, other objects by repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def one_line(text: str) -> str:
    """Escape newlines and other control characters that a config's own strings may carry."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class DocumentError(ConfigError):
    """The file is not a readable YAML/JSON document (syntax, encoding, size, tags, aliases)."""


class SchemaError(ConfigError):
    """A key or value that the config format does not allow (unknown key, wrong type, bad size)."""


class ShapeError(ConfigError):
    """A layer that cannot act on the shape flowing into it (kernel too big, mismatch, ...)."""


class TemplateError(ShapeError):
    """A template instance whose layers cannot be built for the width flowing into it (an expression
    dividing by zero, a value its layers refuse): found when the analysis reaches the instance."""


class UsageError(LayercalcError):
    """A bad command-line option or combination of options."""


class MemoryBudgetError(LayercalcError):
    """verify would need more memory than the budget allows."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program runs so it stops as Ctrl-C stops it: the work done so
    far kept and said, the terminal restored, exit status 143 (128 + 15)."""
