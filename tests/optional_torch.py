"""torch and the torch oracle (tests/torch_models.py) for the tests that compare with them: such a
test skips where torch is not installed, and the rest of its file still runs."""

from __future__ import annotations

from typing import Any

import pytest


def torch_or_skip() -> Any:
    """The torch module, or skip the calling test."""
    return pytest.importorskip("torch")


def torch_models_or_skip() -> Any:
    """tests/torch_models.py (it imports torch at once), or skip the calling test."""
    torch_or_skip()
    return pytest.importorskip("torch_models")
