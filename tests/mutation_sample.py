"""Run mutmut's mutants one pytest process each, on a seeded random sample per module.

mutmut 3.8's forked runner reported obvious breakages as survivors here (a conv whose kernel is None
"survived"): each mutant is therefore run in a fresh pytest process, with MUTANT_UNDER_TEST naming
it and the tests mutmut mapped to the mutated function, fastest first, stopping at the first failure.
mutmut maps only calls made while tests run, not at import (an `Arg` schema built in a class body):
`--again FILE` re-runs the survivors of an earlier run against `--tests` (a broad torch-free set).

    mutmut run "layercalc.layers.activation*"   # once: writes mutants/ and mutants/mutmut-stats.json
    python tests/mutation_sample.py mutants layercalc.layers.conv layercalc.layers.pool --per-module 60
    python tests/mutation_sample.py mutants --again mutation-sample.jsonl --tests tests/test_layers.py ...

Prints one line per mutant and a score per module; a mutant no test reaches counts as surviving.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NAME = re.compile(r"def (x\S*?__mutmut_\d+)\(")


def mutants_of(root: Path, module: str) -> list[str]:
    """Every mutant name mutmut generated for a module, as MUTANT_UNDER_TEST spells it."""
    source = (root / (module.replace(".", "/") + ".py")).read_text()
    return sorted({f"{module}.{m}" for m in NAME.findall(source)})


def run(root: Path, stats: dict, mutant: str, python: str, given: list[str]) -> tuple[str, str]:
    """'killed', 'survived', 'timeout' or 'no tests' for one mutant."""
    function = mutant.rsplit("__mutmut_", 1)[0]
    tests = given or sorted(stats["tests_by_mangled_function_name"].get(function, ()), key=lambda t: stats["duration_by_test"].get(t, 0))
    if not tests:
        return mutant, "no tests"
    budget = 600 if given else 60 + 10 * sum(stats["duration_by_test"].get(t, 0) for t in tests)
    env = dict(os.environ, MUTANT_UNDER_TEST=mutant)
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return mutant, "timeout"
    return mutant, {0: "survived", 1: "killed"}.get(done.returncode, f"error {done.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="mutmut's mutants/ directory")
    parser.add_argument("modules", nargs="*")
    parser.add_argument("--again", type=Path, help="re-run the mutants an earlier run's output says survived")
    parser.add_argument("--tests", nargs="*", default=[], help="run these tests instead of mutmut's map")
    parser.add_argument("--per-module", type=int, default=0, help="sample size per module (0 = every mutant)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--out", type=Path, default=Path("mutation-sample.jsonl"))
    args = parser.parse_args()
    stats = json.loads((args.root / "mutmut-stats.json").read_text())
    rng = random.Random(args.seed)
    chosen = []
    for module in args.modules:
        names = mutants_of(args.root, module)
        chosen += rng.sample(names, min(args.per_module, len(names))) if args.per_module else names
    if args.again:
        earlier = [json.loads(line) for line in args.again.read_text().splitlines()]
        chosen += [r["mutant"] for r in earlier if r["status"] in ("survived", "no tests")]
    tally: dict[str, dict[str, int]] = {}
    with ThreadPoolExecutor(args.workers) as pool, args.out.open("a") as out:
        for mutant, status in pool.map(lambda m: run(args.root, stats, m, args.python, args.tests), chosen):
            module = mutant.split(".x")[0]
            tally.setdefault(module, {}).setdefault(status, 0)
            tally[module][status] += 1
            out.write(json.dumps({"mutant": mutant, "status": status}) + "\n")
            out.flush()
            print(status, mutant, flush=True)
    for module, counts in tally.items():
        total = sum(counts.values())
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        print(f"{module}: {killed}/{total} killed ({100 * killed / total:.1f}%) {counts}")


if __name__ == "__main__":
    main()
