"""Record every command's output on every shipped config, and compare two recordings byte for byte.

A restructuring must not change what a user sees. Record before, record after, compare:

    python bench/output_snapshot.py record before.json      # on the commit before
    python bench/output_snapshot.py record after.json       # on the change
    python bench/output_snapshot.py compare before.json after.json

Each case is one command line (command x format x config x flags) run in-process through the same
entry point as the `layercalc` script, with the table at a fixed width (COLUMNS, no colour), so a
recording depends only on the code. `compare` prints the cases whose stdout, stderr or exit status
differ, with the first differing line, and exits 1 if any do.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = ("table", "json", "csv", "tsv", "markdown")
CONVENTIONS = ("torch", "fvcore", "thop", "ptflops", "torchinfo")
WIDTH = "100"


def flag_sets(command: str) -> list[list[str]]:
    """The option combinations each command is recorded with (each with every format)."""
    common = [[], ["--depth", "1"], ["--by-type"]]
    if command == "shapes":
        return common
    costs = [["--convention", c] for c in CONVENTIONS] + [["--training"], ["--training", "--convention", "torch"]]
    extra = [["--compare"]] if command == "flops" else []
    return common + costs + extra


def configs() -> list[Path]:
    """Every shipped config and example."""
    return sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))


def run(args: list[str]) -> dict[str, object]:
    """One in-process command line: its exit status, stdout and stderr."""
    from layercalc.launch import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return {"status": status, "out": out.getvalue(), "err": err.getvalue()}


def cases() -> list[list[str]]:
    """Every command line recorded, in a fixed order."""
    lines = []
    for config in configs():
        name = str(config.relative_to(ROOT))
        for command in ("summary", "params", "flops", "shapes"):
            for flags in flag_sets(command):
                for fmt in FORMATS:
                    lines.append([command, name, "-f", fmt, *flags])
            lines.append([command, name, "--total"])
    return lines


def record(path: str) -> None:
    """Run every case and write {command line: result} as JSON."""
    os.environ.update(COLUMNS=WIDTH, NO_COLOR="1")
    os.environ.pop("FORCE_COLOR", None)
    os.chdir(ROOT)
    start = time.perf_counter()
    results = {" ".join(args): run(args) for args in cases()}
    Path(path).write_text(json.dumps(results, indent=0, sort_keys=True))
    print(f"{len(results)} cases recorded in {time.perf_counter() - start:.1f} s -> {path}")


def first_difference(a: str, b: str) -> str:
    """The first line where two outputs differ, both sides."""
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())):
        if x != y:
            return f"line {i + 1}: {x!r} -> {y!r}"
    return f"lengths {len(a.splitlines())} -> {len(b.splitlines())} lines"


def compare(old_path: str, new_path: str) -> int:
    """Print every case whose output differs between two recordings; 1 if any does."""
    old, new = (json.loads(Path(p).read_text()) for p in (old_path, new_path))
    changed = 0
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            print(f"{'only in ' + (old_path if key in old else new_path)}: {key}")
            changed += 1
            continue
        for part in ("status", "out", "err"):
            if old[key][part] != new[key][part]:
                detail = first_difference(old[key][part], new[key][part]) if part != "status" else \
                    f"{old[key][part]} -> {new[key][part]}"
                print(f"{key}: {part} differs, {detail}")
                changed += 1
                break
    print(f"{changed} of {len(set(old) | set(new))} cases differ")
    return 1 if changed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
