"""Settings shared by the CLI and the API.

The data root is read from the environment at call time, never at import, so that importing
pretriever has no side effects and tests can point it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "PRETRIEVER_DATA"
"""Environment variable naming the folder that holds datasets by name."""

DEFAULT_DATA_ROOT = Path("~/.cache/pretriever/datasets")


def data_root() -> Path:
    """The folder where named datasets live: ``$PRETRIEVER_DATA`` or ``~/.cache/pretriever/datasets``."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_DATA_ROOT.expanduser()


def default_threads() -> int:
    """Threads for CPU-bound search: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)
