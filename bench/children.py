"""The environment the benches' child processes run in: bytecode cached, as an installed copy's is.

An environment with PYTHONDONTWRITEBYTECODE set makes every child compile every module it imports
(layercalc's, NumPy's, torch's) again, which adds seconds to a whole-process figure and measures
the compiler, not the code. The children cache their bytecode in one folder kept between runs
(PYTHONPYCACHEPREFIX, unless the caller set one): a bench's warm-up run fills it; a stale entry is
recompiled from the source's modification time, as always.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / f"layercalc-bench-pycache-{os.getuid()}"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """A child's environment (from base, else this process's): bytecode written, under a cache folder."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("PYTHONPYCACHEPREFIX", str(CACHE))
    return env


def cache_bytecode() -> None:
    """Make every child this process starts from now on cache its bytecode (its environment changed in place)."""
    env = environment()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = env["PYTHONPYCACHEPREFIX"]
