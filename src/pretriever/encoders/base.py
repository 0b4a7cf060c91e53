"""The ``Encoder`` protocol: text in, float32 vectors out, and a spec that pins how they were made.

An index records its encoder's ``spec()`` in its manifest (model, weights checksum, prompts,
max length, pooling, normalisation, similarity), so that queries are never encoded differently
from the documents without it being noticed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns queries and documents into vectors compared by ``spec()["similarity"]``."""

    kind: ClassVar[str]

    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """One float32 row per query (``progress``: report it, for many queries)."""
        ...

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """One float32 row per document (title and text already joined)."""
        ...

    def spec(self) -> dict[str, Any]:
        """Everything that changes the vectors, for manifests and compatibility checks."""
        ...

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the encoder to a folder that also loads in its native library."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> Encoder:
        """Read a folder written by ``save``."""
        ...
