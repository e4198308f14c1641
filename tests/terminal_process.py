"""Run layercalc as a real process on a pseudo-terminal and signal it once something shows there."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def signalled(args: list[str], sig: int | None, after: bytes | None, stdout_on_terminal: bool,
              env: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Run `python -m layercalc ARGS` with stderr (and stdout, if asked) on a terminal, so verify
    draws its progress bar; send `sig` once `after` shows there (with either None, send nothing:
    the process signals itself). `env` adds to the environment. (exit status, stdout when it was a
    pipe, everything the terminal showed)."""
    master, slave = pty.openpty()
    # a shell's background job starts with SIGINT ignored, and a child inherits that: restore the
    # default so Python installs its own handler, as it does for a user's terminal
    proc = subprocess.Popen([sys.executable, "-m", "layercalc", *args], cwd=ROOT, text=True,
                            stdout=slave if stdout_on_terminal else subprocess.PIPE, stderr=slave,
                            env={**os.environ, **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    seen = b""
    if sig is not None and after is not None:
        deadline = time.monotonic() + 120
        while after not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 4096)
        assert after in seen, f"{after!r} not on the terminal within 120 s"
        proc.send_signal(sig)
    # read while the process runs, so a long output cannot fill the terminal's buffer and stall it
    out_chunks: list[str] = []
    reader = None
    if proc.stdout is not None:
        reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
        reader.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    if reader is not None:
        reader.join(timeout=60)
    os.close(master)
    return proc.returncode, "".join(out_chunks), seen
