"""Wall seconds of one whole process (the figure the bench scripts take medians of)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "bench"))
from children import cache_bytecode  # noqa: E402

cache_bytecode()  # the children this bench starts write their bytecode, as an installed copy does


def wall_seconds(args: list[str], env: dict[str, str], stdout: int | IO = subprocess.DEVNULL) -> float:
    """Run args from the repository root; exit with its stderr if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}: {proc.stderr.decode()}")
    return wall
