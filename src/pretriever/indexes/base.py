"""The ``Index`` protocol every retriever implements.

The scikit-learn contract: ``__init__`` only stores parameters, ``build(corpus)`` does the work
and returns ``self``, ``search`` before ``build``/``load`` raises NotBuiltError. ``save(dir)``
writes a folder with a manifest; ``load(dir)`` checks it and returns a ready index.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from pretriever.data.corpus import Corpus
from pretriever.types import Hit, Queries, Run


@runtime_checkable
class Index(Protocol):
    """What every first-stage retriever offers."""

    kind: ClassVar[str]

    def build(self, corpus: Corpus) -> Index:
        """Index ``corpus``; return self."""
        ...

    def search(self, queries: Queries, k: int = 100) -> Run:
        """Top-``k`` documents per query id, as a run."""
        ...

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the index to a new folder with a manifest, atomically."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> Index:
        """Read an index folder written by ``save``."""
        ...


def search_one(index: Index, text: str, k: int = 10) -> list[Hit]:
    """Search a single query string; hits in rank order."""
    from pretriever.runs import ranked

    run = index.search({"q": text}, k=k)
    return ranked(run.get("q", {}), k)
