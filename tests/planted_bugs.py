"""Plant each bug issue 14 lists in a copy of the package and show the suite kills it.

    python tests/planted_bugs.py [--python /path/to/python] [--only NAME]

For each bug: copy the worktree to a temporary folder, apply the one-line change, run the tests
that should catch it (-x, quietly) and print KILLED (a test failed) or SURVIVED. Run it with a
Python that has torch and one that has not (e.g. a virtual environment with only the test extra): every bug must be
killed by both. Not part of the pytest run (it runs the suite once per bug).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, file, old text, new text, tests that should kill it)
BUGS = [
    ("verify tolerances x100", "layercalc/verify/report.py", "rtol: float = 1e-5\n    atol: float = 1e-8",
     "rtol: float = 1e-3\n    atol: float = 1e-6", "tests/test_cli_options.py"),
    ("training rows charge the first layer a dL/dx", "layercalc/analysis.py",
     "for run in _chain([(e, 1) for e in self.entries], grad=False)",
     "for run in _chain([(e, 1) for e in self.entries], grad=True)", "tests/test_cli_options.py"),
    ("training backward ignores whether the input needs a gradient", "layercalc/conventions.py",
     "return layer.backward_macs(x, y, grad, convention)",
     "return layer.backward_macs(x, y, True, convention)",
     "tests/test_stored_references.py"),
    ("residual and concat outputs left out of activation memory", "layercalc/analysis.py",
     "_sum_children(entry, extra_tensor=numel(y) if layer.creates_tensor else 0)",
     "_sum_children(entry, extra_tensor=0)", "tests/test_stored_references.py"),
    ("torchinfo's linear counts the middle dims", "layercalc/layers/linear.py",
     "torchinfo=n * k * o),", "torchinfo=macs),", "tests/test_stored_references.py"),
    ("a thop rule changed (softmax 3F - 1 -> 3F)", "layercalc/layers/activation.py",
     "thop=numel(x) // f * (3 * f - 1)", "thop=numel(x) // f * (3 * f)", "tests/test_stored_references.py"),
    ("NumPy max-pool ignores ceil_mode", "layercalc/layers/pool.py",
     "pool.maxpool_forward(x, k, s, p, d, self.ceil_mode)",
     "pool.maxpool_forward(x, k, s, p, d, False)",
     "tests/test_stored_references.py"),
    ("GELU derivative coefficient", "layercalc/layers/activation.py",
     "(1 + 3 * 0.044715 * x**2)", "(1 + 0.044715 * x**2)", "tests/test_stored_references.py"),
    ("groupnorm normalises per channel", "layercalc/layers/norm.py",
     "return (2,), x.reshape(x.shape[0], self.num_groups, -1)",
     "return (2,), x.reshape(x.shape[0], x.shape[1], -1)", "tests/test_stored_references.py"),
    ("a repeat's last copy counted once", "layercalc/analysis.py",
     "rest = self.copies - len(distinct) + 1", "rest = 1", "tests/test_layers.py tests/test_cli_options.py"),
    ("--compare drops a category nobody listed", "layercalc/conventions.py",
     "+ [c for c in buckets if c not in CATEGORIES]", "", "tests/test_cli_options.py"),
    ("markdown leaves '|' in names", "layercalc/render/formats.py",
     '.replace("|", "\\\\|")', "", "tests/test_cli_options.py"),
    # issue 12: frozen layers
    ("a frozen layer's params still make later inputs need a gradient", "layercalc/analysis.py",
     "grad = grad or child.trainable_params > 0", "grad = grad or child.params > 0", "tests/test_frozen.py"),
    ("a frozen layer keeps its weight gradient", "layercalc/conventions.py",
     "layer.backward_macs(x, y, True, convention) - layer.weight_grad_macs(x, y, convention)",
     "layer.backward_macs(x, y, True, convention)", "tests/test_frozen.py"),
    ("frozen params get gradient memory", "layercalc/conventions.py",
     '"gradient_bytes": trainable * size', '"gradient_bytes": params * size', "tests/test_frozen.py"),
    ("a frozen block's children stay trainable", "layercalc/config.py",
     "        return frozen is None\n", "        return True\n", "tests/test_frozen.py"),
    ("token ids sized as the dtype", "layercalc/analysis.py",
     "(TOKEN_ID_BYTES if self.tokens else self.dtype_bytes)", "self.dtype_bytes", "tests/test_frozen.py"),
]


def run(python: str, only: str | None) -> int:
    survived = 0
    for name, file, old, new, tests in BUGS:
        if only and only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "wt"
            shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "mutants", "__pycache__", ".hypothesis"))
            path = copy / file
            text = path.read_text()
            assert text.count(old) == 1, f"{name}: the text to change is not in {file} exactly once"
            path.write_text(text.replace(old, new))
            proc = subprocess.run(
                [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests.split()],
                cwd=copy, capture_output=True, text=True, env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin", "CI": "1"},
            )
            killed = proc.returncode == 1
            survived += not killed
            last = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED")][:1]
            print(f"{'KILLED  ' if killed else 'SURVIVED'} {name}  {last[0] if last else proc.stdout.strip().splitlines()[-1:]}")
    return survived


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--only")
    args = parser.parse_args()
    sys.exit(1 if run(args.python, args.only) else 0)
