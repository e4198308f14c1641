"""Write the manual's examples by running the real commands, so they cannot go stale.

    python docs/examples.py          # refresh every example in README.md and docs/, and docs/generated/
    python docs/examples.py --check  # exit 1, naming them, if any differs from what the commands print now

In the Markdown, an example is a block between `<!-- example NAME -->` and `<!-- /example -->`:
the command line and what it printed at a fixed terminal width, rewritten here. The HTML report and
the sweep plot are written to docs/generated/ and embedded by the pages. Only commands whose output
is the same on every machine are used (no timings, no float errors of a numerical check).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "generated"
WIDTH = "80"  # a real terminal

# name -> the arguments after `layercalc`
TEXT: dict[str, list[str]] = {
    "summary_resnet18": ["summary", "configs/resnet18.yaml", "--depth", "1", "-f", "table"],
    "params_total": ["params", "configs/resnet50.yaml", "--total"],
    "flops_compare": ["flops", "configs/resnet18.yaml", "--compare", "-f", "table"],
    "shapes_lenet5": ["shapes", "configs/lenet5.yaml", "-f", "table"],
    "by_type_vgg16": ["params", "configs/vgg16.yaml", "--by-type", "-f", "table"],
    "layers_conv2d": ["layers", "conv2d"],
    "kconv_small": ["kconv", "--input", "3x3", "--kernel", "2x2", "--backward", "-f", "table"],
    "train_llama3": ["train", "configs/llama3_8b.yaml", "--gpu", "h100-sxm", "--gpus", "8", "-f", "table"],
    "serve_llama3": ["serve", "configs/llama3_8b.yaml", "--gpu", "h100-sxm", "-f", "table"],
    "gpus": ["gpus", "-f", "table"],
    "import_llama3": ["import", "hf", "tests/hf_configs/llama3_8b.json", "--input", "8192"],
}
# name -> the arguments of a command that prints a whole file (the HTML report)
PAGES: dict[str, list[str]] = {
    "resnet18_report.html": ["summary", "configs/resnet18.yaml", "-f", "html"],
}
# name -> the arguments of a command whose last option names the file it writes (the SVG plot)
FILES: dict[str, list[str]] = {
    "gpt2_sweep.svg": ["flops", "configs/gpt2.yaml", "--sweep", "T=16..1024:32", "--plot"],
}
BLOCK = re.compile(r"(<!-- example (\S+) -->\n)(.*?)(<!-- /example -->)", re.S)


def _run(args: list[str]) -> str:
    """What `layercalc ARGS` prints on stdout, at the manual's width, run from the repository root."""
    env = {**os.environ, "COLUMNS": WIDTH, "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-m", "layercalc", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"layercalc {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def pages() -> list[Path]:
    """The Markdown a reader opens: the README and every page of the manual."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def example(name: str) -> str:
    """The block for one text example: the command line, then its output, as a code block."""
    if name not in TEXT:
        raise SystemExit(f"no example named {name!r}; the examples: {', '.join(TEXT)}")
    lines = [f"$ layercalc {' '.join(TEXT[name])}", *_run(TEXT[name]).splitlines()]
    return "```text\n" + "\n".join(line.rstrip() for line in lines) + "\n```\n"


def refreshed(text: str, cache: dict[str, str]) -> str:
    """A page's text with every example block rewritten from the command it names."""
    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in cache:
            cache[name] = example(name)
        return m.group(1) + cache[name] + m.group(4)
    return BLOCK.sub(fill, text)


def write_files(into: Path) -> None:
    """The embedded files (the HTML report, the sweep plot) into the directory `into`."""
    into.mkdir(parents=True, exist_ok=True)
    for name, args in PAGES.items():
        (into / name).write_text(_run(args))
    for name, args in FILES.items():
        _run([*args, str(into / name)])


def stale() -> list[str]:
    """The pages and generated files that differ from a fresh rendering, relative to the root."""
    cache: dict[str, str] = {}
    changed = [str(p.relative_to(ROOT)) for p in pages() if refreshed(p.read_text(), cache) != p.read_text()]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        write_files(fresh)
        for name in sorted({p.name for p in fresh.iterdir()} | {p.name for p in OUT.glob("*")}):
            old, new = OUT / name, fresh / name
            if not old.exists() or not new.exists() or old.read_bytes() != new.read_bytes():
                changed.append(f"docs/generated/{name}")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    if parser.parse_args().check:
        changed = stale()
        for name in changed:
            print(f"stale: {name} (run python docs/examples.py)")
        return 1 if changed else 0
    cache: dict[str, str] = {}
    for page in pages():
        page.write_text(refreshed(page.read_text(), cache))
    write_files(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
