"""The import graph of layercalc, read from the source (ast): no cycles, and each package imports
only what the first line of its docstring ("May import: ...") allows.

Every import counts, at module level or inside a function: an import moved into a function still
makes the two modules depend on each other. Importing a.b.c also runs the packages a and a.b,
but those implicit edges are left out (every module would otherwise depend on layercalc/__init__).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "layercalc"
PREFIX = "May import: "

# edges allowed to close a cycle for now; each must still exist (delete it here once it is gone)
KNOWN_EXCEPTIONS = {
    # Report.render calls api.render; helper A's branch (one run table) moves it and removes this edge
    ("layercalc.analysis", "layercalc.api"),
}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (a package by its __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The layercalc modules `name` (at `path`) imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                head = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{head}.{base}" if base else head
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {m for m in out if m in known and m != name}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Every layercalc module -> the layercalc modules it imports."""
    known = modules(root)
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, targets = work[-1]
            step = next((t for t in targets if t not in index or t in stack), None)
            if step is not None:
                if step in index:
                    low[node] = min(low[node], index[step])
                else:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    work.append((step, iter(sorted(edges[step]))))
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = stack[stack.index(node):]
                del stack[stack.index(node):]
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def without_exceptions(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in targets if (a, b) not in KNOWN_EXCEPTIONS} for a, targets in edges.items()}


def packages(root: Path = ROOT) -> dict[str, list[str]]:
    """Each package -> the names (relative to layercalc) the first line of its docstring allows."""
    rules = {}
    for name, path in modules(root).items():
        if path.name != "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        first = doc.splitlines()[0] if doc else ""
        assert first.startswith(PREFIX), f"{path}: its docstring must start with '{PREFIX}...'"
        listed = first[len(PREFIX):].split(";")[0].strip().rstrip(".")
        rules[name] = [n.strip() for n in listed.split(",") if n.strip() and n.strip() != "nothing"]
    return rules


def owner(module: str, rules: dict[str, list[str]]) -> str:
    """The innermost package with a rule that holds `module`."""
    parts = module.split(".")
    return next(".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in rules)


def forbidden(edges: dict[str, set[str]], rules: dict[str, list[str]]) -> list[str]:
    """Imports that leave a module's package for a module its rule does not list."""
    bad = []
    for source, targets in edges.items():
        home = owner(source, rules)
        allowed = [f"layercalc.{n}" for n in rules[home]]
        for target in sorted(targets):
            if owner(target, rules) == home:
                continue
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                bad.append(f"{source} imports {target}; {home} may import only {', '.join(rules[home]) or 'nothing'}")
    return bad


def test_no_import_cycles() -> None:
    found = cycles(without_exceptions(graph()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_known_exceptions_still_exist() -> None:
    edges = graph()
    gone = [f"{a} -> {b}" for a, b in KNOWN_EXCEPTIONS if b not in edges.get(a, set())]
    assert not gone, f"no longer imported, delete from KNOWN_EXCEPTIONS: {gone}"


def test_packages_import_only_what_they_say() -> None:
    rules = packages()
    assert {"layercalc", "layercalc.layers", "layercalc.render", "layercalc.verify", "layercalc.kernels"} <= set(rules)
    bad = forbidden(graph(), rules)
    assert not bad, "\n".join(bad)


def write(tmp: Path, files: dict[str, str]) -> Path:
    """A small package tree under tmp/layercalc for the checks' own tests."""
    for name, text in files.items():
        path = tmp / "layercalc" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp / "layercalc"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = write(tmp_path, {
        "__init__.py": '"""May import: sub."""\n',
        "a.py": "from .b import x\n",
        "b.py": "def f():\n    from . import a\n",
        "c.py": "import layercalc.a\n",
    })
    assert cycles(graph(root)) == [["layercalc.a", "layercalc.b"]]


@pytest.mark.parametrize("line, allowed", [("May import: errors.", True), ("May import: nothing.", False)])
def test_an_import_outside_the_rule_is_found(tmp_path: Path, line: str, allowed: bool) -> None:
    root = write(tmp_path, {
        "__init__.py": '"""May import: sub."""\n',
        "errors.py": "",
        "sub/__init__.py": f'"""{line}\n\nA package."""\n',
        "sub/x.py": "from ..errors import E\nfrom . import y\n",
        "sub/y.py": "",
    })
    assert (forbidden(graph(root), packages(root)) == []) is allowed
