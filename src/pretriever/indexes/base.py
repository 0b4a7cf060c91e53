"""The ``Index`` protocol every retriever implements, and loading any index folder by its kind.

The scikit-learn contract: ``__init__`` only stores parameters, ``build(corpus)`` does the work
and returns ``self``, ``search`` before ``build``/``load`` raises NotBuiltError. ``save(dir)``
writes a folder with a manifest; ``load(dir)`` checks it and returns a ready index.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from pretriever._manifest import read_manifest
from pretriever.data.corpus import Corpus
from pretriever.errors import ManifestError
from pretriever.types import Hit, Queries, Run

# kind -> "module:Class"; imported only when a folder of that kind is loaded.
INDEX_KINDS: dict[str, str] = {
    "index.bm25": "pretriever.indexes.bm25:BM25Index",
    "index.dense.flat": "pretriever.indexes.dense:FlatIndex",
    "index.dense.faiss": "pretriever.indexes.ann:FaissIndex",
    "index.pipeline": "pretriever.retrieval.pipeline:Pipeline",
}


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


def load_index(path: str | Path) -> Index:
    """Load any index folder, choosing the implementation from its manifest's kind."""
    manifest = read_manifest(path, kind="index.", verify=False)
    target = INDEX_KINDS.get(manifest["kind"])
    if target is None:
        raise ManifestError(
            f"{path} holds an index of kind '{manifest['kind']}', which this pretriever does not "
            f"know (known: {', '.join(sorted(INDEX_KINDS))}); upgrade pretriever"
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.load(path)
