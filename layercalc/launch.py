"""The `layercalc` entry point: one place that turns every failure into one line and a status.

`layercalc params CONFIG --total [--trainable]`, `layercalc flops CONFIG --total [--macs]` (or `macs`) are
the calls shell pipelines make over and over; answering them does not need the command-line framework,
whose import alone costs more than the whole calculation (about 50 ms of a 150 ms budget).
Those exact forms are answered here; everything else goes to the Typer app in cli.py.
"""

from __future__ import annotations

import _signal as signal  # `signal`'s own functions, without the enums of every signal number it builds on import
import codecs
import gc
import os
import sys
from typing import Any, Callable

from .errors import (
    EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT, EXIT_TERMINATED, EXIT_USAGE, LayercalcError, Terminated, one_line,
)
# what stands for each non-ASCII character layercalc itself prints, on a stdout whose encoding
# cannot show it (PYTHONIOENCODING=ascii, a Latin-1 locale); anything else (a name's own
# characters) is written as a backslash escape
ASCII = {
    "─": "-", "│": "|", "×": "x", "…": "...", "·": ".", "—": "-", "–": "-", "→": "->", "≤": "<=", "≥": ">=",
    "█": "#", "▏": "", "▎": "", "▍": "", "▌": "", "▋": "", "▊": "", "▉": "", "ᵀ": "^T", "∇": "grad ",
    "∂": "d", "⋆": "*", "Σ": "sum", "⁻": "^-", "¹": "1", "²": "2", "\u00a0": " ",
}


class OutputError(LayercalcError):
    """stdout cannot be written (closed, a full disk, /dev/full): said once, exit EXIT_OUTPUT."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot write to stdout: {reason}")


class ReaderGone(Exception):
    """The reader of stdout went away (`| head -1`, `| true`): not an OSError, so that neither
    Click nor Rich turns it into their exit 1 (the status of a failed check) on the way out."""


class Output:
    """stdout as layercalc writes it: a failed write is an OutputError (a closed pipe ReaderGone),
    and characters the encoding cannot show are written as ASCII stand-ins or escapes, not refused."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            name = "ascii"
        self._table = {} if name.startswith("utf") else str.maketrans(
            {ch: sub for ch, sub in ASCII.items() if not _encodes(ch, name)})
        if self._table and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    def write(self, text: str) -> int:
        """Write text (translated for a narrow encoding); OSError becomes OutputError."""
        try:
            return self._stream.write(text.translate(self._table) if self._table else text)
        except BrokenPipeError:
            raise ReaderGone from None
        except OSError as exc:
            raise OutputError(_reason(exc)) from None

    def flush(self) -> None:
        """Flush; OSError becomes OutputError."""
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise ReaderGone from None
        except OSError as exc:
            raise OutputError(_reason(exc)) from None

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno, buffer: the stream's own
        return getattr(self._stream, name)


def _encodes(ch: str, encoding: str) -> bool:
    try:
        ch.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _reason(exc: OSError) -> str:
    """'no space left on device' from an OSError."""
    text = exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _quiet_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's final flush of what is still buffered cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no fd (an in-process caller's capture): nothing to flush
        pass


# (command, the one extra flag) -> the key of Report.total printed
TOTALS = {("params", None): "params", ("params", "--trainable"): "trainable_params",
          ("flops", None): "flops", ("flops", "--macs"): "macs", ("macs", None): "macs"}


def fail(message: str, status: int) -> int:
    """Print `error: message` on stderr (one line); return the exit status."""
    if sys.stderr is not None:  # `2>&-`: the status alone says it (print would fall back to stdout)
        print(f"error: {one_line(message)}", file=sys.stderr)
    return status


def guarded(action: Callable[[], int], debug: bool) -> int:
    """Run a command; map every failure to one stderr line and an exit status, never a traceback."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): every command prints its result there
        return fail("cannot write to stdout: it is closed", EXIT_OUTPUT)
    if sys.stderr is None:  # `2>&-`: messages go nowhere, and never to stdout
        sys.stderr = open(os.devnull, "w")
    if sys.stdin is None:  # `<&-`: a config read from '-' is empty
        sys.stdin = open(os.devnull)
    # A short-lived process that builds large acyclic trees: the cyclic garbage collector
    # would only re-scan them (a third of the time on a 100,000-entry config).
    collecting = gc.isenabled()
    gc.disable()
    sigterm = Sigterm()
    stdout = sys.stdout
    sys.stdout = Output(stdout)
    try:
        status = action()
        sys.stdout.flush()
    except OutputError as exc:
        _quiet_stdout()
        status = fail(str(exc), EXIT_OUTPUT)
    except LayercalcError as exc:
        status = fail(str(exc), EXIT_USAGE)
    except Terminated:
        status = fail("terminated", EXIT_TERMINATED)
    except KeyboardInterrupt:
        status = fail("interrupted", EXIT_INTERRUPTED)
    except (ReaderGone, BrokenPipeError):
        # the reader went away (`| head -1`, `| true`): stop quietly, as a reader that has what
        # it wants is no failure
        _quiet_stdout()
        status = EXIT_OK
    except Exception as exc:  # an internal bug: never a traceback for users, unless asked; 70 either way
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
            status = fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)
        else:
            status = fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_INTERNAL)
    finally:
        sys.stdout = stdout
        if collecting:  # for callers that run main() in-process, such as the tests
            gc.enable()
        sigterm.restore()
    if sigterm.came and status == EXIT_INTERRUPTED:  # Typer turns every KeyboardInterrupt into 130
        status = EXIT_TERMINATED
    return status


class Sigterm:
    """While installed, SIGTERM raises Terminated where the program runs, so it stops as Ctrl-C
    stops it (verify keeps and prints the checks done, a progress bar gives the terminal its cursor
    back); `came` says whether it did."""

    def __init__(self) -> None:
        self.came = False
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread, where Python sets no handler
            self.previous = self

    def _raise(self, signum: int, frame: object) -> None:
        self.came = True
        raise Terminated

    def restore(self) -> None:
        """Put back the handler there was before."""
        if self.previous is not self:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self.previous is None else self.previous)


def total_query(args: list[str]) -> tuple[str, str] | None:
    """(config, total key) when args are exactly `params CONFIG --total [--trainable]` or
    `flops CONFIG --total [--macs]` or `macs CONFIG --total` (flags in any order)."""
    if not args or args[0] not in ("params", "flops", "macs"):
        return None
    rest = args[1:]
    flags = {a for a in rest if a.startswith("-") and a != "-"}
    configs = [a for a in rest if a not in flags]
    if len(configs) != 1 or len(rest) != len(flags) + 1 or "--total" not in flags or len(flags) > 2:
        return None
    extra = next((f for f in flags if f != "--total"), None)
    key = TOTALS.get((args[0], extra))
    return (configs[0], key) if key else None


def _warn(message: Warning | str, category: type[Warning], *rest: object, **kw: object) -> None:
    """A warning as one line on stderr: layercalc's own plainly, anything else as Python words it."""
    from .errors import LayercalcWarning, one_line

    if issubclass(category, LayercalcWarning):
        sys.stderr.write(f"warning: {one_line(str(message))}\n")
    else:
        sys.stderr.write(f"warning: {category.__name__}: {one_line(str(message))}\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `layercalc` command and of `python -m layercalc`."""
    import warnings

    warnings.showwarning = _warn  # type: ignore[assignment]
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # a bare `layercalc` asks what it can do: the help, and success
        args = ["--help"]
    query = total_query(args)
    if query is None:
        from .cli import run_app

        end = args.index("--") if "--" in args else len(args)
        sys.exit(guarded(lambda: run_app(args), "--debug" in args[:end]))

    def answer() -> int:
        from .api import analyse

        config, key = query
        print(analyse(config).total[key])
        return EXIT_OK

    sys.exit(guarded(answer, debug=False))
