"""The ``Index`` protocol every retriever implements.

The scikit-learn contract: ``__init__`` only stores parameters, ``build(corpus)`` does the work
and returns ``self``, ``search`` before ``build``/``load`` raises NotBuiltError. ``save(dir)``
writes a folder with a manifest; ``load(dir)`` checks it and returns a ready index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError, NotBuiltError
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


class DocumentTable:
    """What every index over encoded documents shares: its document ids (None until built or
    loaded), the corpus it was built from, and the NotBuiltError before that."""

    _doc_ids: Any = None
    _corpus_info: dict[str, Any]

    @property
    def is_built(self) -> bool:
        return self._doc_ids is not None

    def __len__(self) -> int:
        return 0 if self._doc_ids is None else len(self._doc_ids)

    def _check_built(self) -> None:
        if not self.is_built:
            raise NotBuiltError(f"this {type(self).__name__} is not built: call build(corpus) or load(path)")

    def _query_ids(self, queries: Queries, k: int) -> list[str]:
        """The ids of ``queries``, after the checks every search makes (built, k >= 1)."""
        self._check_built()
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        return list(queries)

    @property
    def corpus_info(self) -> dict[str, Any]:
        return dict(self._corpus_info)


def search_one(index: Index, text: str, k: int = 10) -> list[Hit]:
    """Search a single query string; hits in rank order."""
    from pretriever.runs import ranked

    run = index.search({"q": text}, k=k)
    return ranked(run.get("q", {}), k)
