"""Plant each known bug in a copy of the package and show the suite kills it.

    python tests/planted_bugs.py [--python /path/to/python] [--only NAME]

A plant names a behaviour, not a line: the module, the function (or class) by its qualified name,
and one or more code changes inside it. Each change's old code is matched token by token within
that function only (layout, line breaks and comments ignored) and must occur there exactly once, so
the plant survives code moving inside its module, reformatting and edits elsewhere. A plant whose
function or code is gone is BROKEN, never silently skipped.

For each plant: copy the worktree to a temporary folder, apply the change, run the tests that
should catch it (-x, quietly) and print KILLED (a test failed), SURVIVED or BROKEN. Run it with a
Python that has torch and one that has not: every plant must be killed by both. Not part of the
pytest run (it runs the suite once per plant); tests/test_planted_bugs.py checks every plant applies.
"""

from __future__ import annotations

import argparse
import ast
import io
import shutil
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Tokens that carry layout, not code: a change matches whatever the wrapping and comments.
_LAYOUT = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.ENDMARKER}
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class PlantBroken(Exception):
    """A plant's function, or the code it changes, is not where the plant says."""


@dataclass(frozen=True)
class Plant:
    """One planted bug: in `module`'s `where` (qualified name), replace each old code with its new."""

    name: str
    module: str  # dotted, e.g. "layercalc.analysis"
    where: str  # qualified name of a function, method or class, e.g. "Report.walk"
    changes: tuple[tuple[str, str], ...]  # (old code, new code), each old exactly once in `where`
    tests: tuple[str, ...]  # test files (or node ids) that must fail once it is planted

    @property
    def file(self) -> str:
        """The module's path relative to the worktree."""
        return self.module.replace(".", "/") + ".py"


def _plant(name: str, module: str, where: str, old: str, new: str, *tests: str) -> Plant:
    """A plant with a single change."""
    return Plant(name, module, where, ((old, new),), tests)


PLANTS = [
    Plant("verify tolerances x100", "layercalc.verify.report", "Options",
          (("rtol: float = 1e-5", "rtol: float = 1e-3"), ("atol: float = 1e-8", "atol: float = 1e-6")),
          ("tests/test_cli_options.py",)),
    _plant("training rows charge the first layer a dL/dx", "layercalc.analysis", "Report.run_table",
           "_chain([(e, 1, 1) for e in self.entries], grad=False)",
           "_chain([(e, 1, 1) for e in self.entries], grad=True)", "tests/test_cli_options.py"),
    _plant("training backward ignores whether the input needs a gradient", "layercalc.conventions", "own_backward",
           "return layer.backward_macs(x, y, grad, convention)",
           "return layer.backward_macs(x, y, True, convention)", "tests/test_stored_references.py"),
    _plant("residual and concat outputs left out of activation memory", "layercalc.analysis", "_block",
           "_sum_children(entry, extra_tensor=numel(y) if layer.creates_tensor else 0)",
           "_sum_children(entry, extra_tensor=0)", "tests/test_stored_references.py"),
    _plant("torchinfo's linear counts the middle dims", "layercalc.layers.linear", "Linear.peer_counts",
           "torchinfo=n * k * o", "torchinfo=macs", "tests/test_stored_references.py"),
    _plant("a thop rule changed (softmax 3F - 1 -> 3F)", "layercalc.layers.activation", "Softmax.peer_counts",
           "thop=numel(x) // f * (3 * f - 1)", "thop=numel(x) // f * (3 * f)", "tests/test_stored_references.py"),
    _plant("NumPy max-pool ignores ceil_mode", "layercalc.layers.pool", "_Pool.forward",
           "pool.maxpool_forward(x, k, s, p, d, self.ceil_mode)",
           "pool.maxpool_forward(x, k, s, p, d, False)", "tests/test_stored_references.py"),
    _plant("GELU derivative coefficient", "layercalc.layers.activation", "GELU.df",
           "(1 + 3 * 0.044715 * x**2)", "(1 + 0.044715 * x**2)", "tests/test_stored_references.py"),
    _plant("groupnorm normalises per channel", "layercalc.layers.norm", "GroupNorm.stats_axes",
           "x.reshape(x.shape[0], self.num_groups, -1)",
           "x.reshape(x.shape[0], x.shape[1], -1)", "tests/test_stored_references.py"),
    _plant("a repeat's last copy counted once", "layercalc.analysis", "Entry.counted",
           "rest = self.copies - len(distinct) + 1", "rest = 1", "tests/test_layers.py", "tests/test_cli_options.py"),
    _plant("--compare drops a category nobody listed", "layercalc.conventions", "compare",
           "+ [c for c in buckets if c not in CATEGORIES]", "", "tests/test_cli_options.py"),
    _plant("markdown leaves '|' in names", "layercalc.render.formats", "_md",
           '.replace("|", "\\\\|")', "", "tests/test_cli_options.py"),
    # frozen layers
    _plant("a frozen layer's params still make later inputs need a gradient", "layercalc.analysis", "_chain",
           "grad = grad or child.trainable_params > 0", "grad = grad or child.params > 0", "tests/test_frozen.py"),
    _plant("a frozen layer keeps its weight gradient", "layercalc.conventions", "own_backward",
           "through - layer.weight_grad_macs(x, y, convention)", "through", "tests/test_frozen.py"),
    _plant("frozen params get gradient memory", "layercalc.conventions", "training",
           '"gradient_bytes": trainable * size', '"gradient_bytes": params * size', "tests/test_frozen.py"),
    _plant("a frozen block's children stay trainable", "layercalc.config", "_trainable",
           "return frozen is None", "return True", "tests/test_frozen.py"),
    _plant("token ids sized as the dtype", "layercalc.analysis", "Report.input_bytes",
           "(TOKEN_ID_BYTES if self.tokens else self.dtype_bytes)", "self.dtype_bytes", "tests/test_frozen.py"),
    # a mixture's experts run on the tokens routed to them
    _plant("a routed expert's output put back at the wrong rows", "layercalc.verify.execution", "_placed",
           "full[rows] = part", "full[rows[::-1]] = part", "tests/test_experts.py"),
    _plant("a routed expert gets split's gradient of the first rows", "layercalc.verify.execution", "backward",
           "n, d = len(d), d[rows]", "n, d = len(d), d[: len(rows)]", "tests/test_experts.py"),
]


def _definition(tree: ast.Module, qualname: str) -> ast.AST:
    """The one function or class named `qualname` (dotted through enclosing classes and functions)."""
    scope: ast.AST = tree
    for part in qualname.split("."):
        found = [n for n in _definitions_in(scope) if n.name == part]
        if len(found) != 1:
            raise PlantBroken(f"{qualname}: {len(found)} definitions of {part!r} (need exactly 1)")
        scope = found[0]
    return scope


def _definitions_in(scope: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """Functions and classes defined in `scope` itself (under an `if` or `try` too), not nested deeper."""
    found = []
    for child in ast.iter_child_nodes(scope):
        found.extend([child] if isinstance(child, _DEFINITIONS) else _definitions_in(child))
    return found


def _code_tokens(text: str) -> list[tokenize.TokenInfo]:
    """The tokens of `text` that are code (no layout, no comments)."""
    return [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type not in _LAYOUT]


def _line_starts(text: str) -> list[int]:
    """Character offset of the start of each line, indexed by 1-based row as tokenize counts."""
    starts = [0, 0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _span(text: str, node: ast.AST, old: str) -> tuple[int, int]:
    """Character span in `text` of the one token-for-token occurrence of `old` inside `node`."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    inside = [t for t in _code_tokens(text) if first <= t.start[0] <= node.end_lineno]
    want = [t.string for t in _code_tokens(old)]
    if not want:
        raise PlantBroken(f"the code to change is empty: {old!r}")
    hits = [i for i in range(len(inside) - len(want) + 1) if [t.string for t in inside[i:i + len(want)]] == want]
    if len(hits) != 1:
        raise PlantBroken(f"{old!r} occurs {len(hits)} times (need exactly 1)")
    starts = _line_starts(text)
    begin, end = inside[hits[0]].start, inside[hits[0] + len(want) - 1].end
    return starts[begin[0]] + begin[1], starts[end[0]] + end[1]


def planted(plant: Plant, root: Path = ROOT) -> str:
    """The text of the plant's module with its changes made; PlantBroken names what is missing."""
    path = root / plant.file
    if not path.exists():
        raise PlantBroken(f"{plant.name}: {plant.file} is gone")
    text = path.read_text()
    for old, new in plant.changes:
        try:
            node = _definition(ast.parse(text), plant.where)
            begin, end = _span(text, node, old)
        except PlantBroken as exc:
            raise PlantBroken(f"{plant.name}: in {plant.module}: {exc}") from None
        text = text[:begin] + new + text[end:]
    try:
        ast.parse(text)
    except SyntaxError as exc:
        raise PlantBroken(f"{plant.name}: the planted {plant.file} does not parse: {exc}") from None
    return text


def _run_one(plant: Plant, python: str) -> str:
    """KILLED, SURVIVED or BROKEN, with the first failing test or the reason."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "wt"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", ".hypothesis"))
        try:
            (copy / plant.file).write_text(planted(plant, copy))
        except PlantBroken as exc:
            return f"BROKEN   {exc}"
        proc = subprocess.run(
            [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *plant.tests],
            cwd=copy, capture_output=True, text=True, env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "CI": "1"},
        )
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED")][:1]
    detail = last[0] if last else proc.stdout.strip().splitlines()[-1:]
    return f"{'KILLED  ' if proc.returncode == 1 else 'SURVIVED'} {plant.name}  {detail}"


def run(python: str, only: str | None) -> int:
    """Plant each bug (those whose name contains `only`); the number not killed."""
    not_killed = 0
    for plant in PLANTS:
        if only and only not in plant.name:
            continue
        line = _run_one(plant, python)
        not_killed += not line.startswith("KILLED")
        print(line, flush=True)
    return not_killed


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--only")
    args = parser.parse_args()
    sys.exit(1 if run(args.python, args.only) else 0)
