"""Print the code measures of the package: lines per part, the longest functions, walks over the tree.

    python bench/code_measures.py [ROOT]

- lines: non-blank lines of the calculator (everything but verify/, kernels/, render/, cli/launch)
  and of verify (verify/ and kernels/), and of the whole package;
- the ten longest functions (def line to last line, nested functions counted in their own right);
- walks: calls of `.runs(` outside the one place that builds the run table.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def functions(tree: ast.AST, rel: str) -> list[tuple[int, str]]:
    """(length in lines, 'file:qualname') of every function in a module."""
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((child.end_lineno - child.lineno + 1, f"{rel}:{name}"))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent) / "layercalc"
    parts = {"calculator": 0, "verify": 0, "render+cli": 0}
    longest: list[tuple[int, str]] = []
    walks: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root.parent))
        text = path.read_text()
        lines = sum(1 for line in text.splitlines() if line.strip())
        top = path.relative_to(root).parts[0]
        if top in ("verify", "kernels"):
            parts["verify"] += lines
        elif top == "render" or path.stem in ("cli", "launch"):
            parts["render+cli"] += lines
        else:
            parts["calculator"] += lines
        tree = ast.parse(text)
        longest += functions(tree, rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "runs":
                walks.append(f"{rel}:{node.lineno}")
    for part, n in parts.items():
        print(f"lines ({part}): {n}")
    print(f"lines (package): {sum(parts.values())}")
    print("ten longest functions:")
    for n, name in sorted(longest, reverse=True)[:10]:
        print(f"  {n:4d}  {name}")
    print(f"calls of .runs(): {len(walks)}  " + " ".join(walks))


if __name__ == "__main__":
    main()
