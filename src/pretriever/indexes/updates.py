"""Adding, deleting and replacing documents in a built index, without rebuilding it.

Every index kind splits an update in two, so that a durable log (``retrieval/live.py``) can record
it between the halves and replay it after a restart without a model:

- ``prepare_add(corpus) -> payload``: the expensive, side-effect-free part (tokenising, encoding),
  as plain arrays (``Payload``);
- ``apply_add(ids, payload)`` / ``apply_delete(ids)``: the cheap change of the in-memory index.

Deletes are tombstones (a mask over rows, saved as ``deleted.npy`` and skipped by every search)
except where the index's statistics depend on every document (BM25 recomputes them, so its
scores stay those of a rebuild). ``compact()`` drops tombstoned rows; an index whose updates only
approximate a rebuild (``exact_updates`` False: HNSW, IVF-PQ, PLAID) says why in its docstring.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError, DuplicateDocumentError, UnknownDocumentError, shown
from pretriever.types import Document

Payload = dict[str, np.ndarray]
DELETED = "deleted.npy"
TOMBSTONES_FORMAT = 2  # the format version of a saved index with tombstones


def as_corpus(documents: Corpus | Iterable[Document | dict[str, Any]]) -> Corpus:
    """A Corpus of the given documents, refusing empty ids and ids twice in the batch."""
    if not isinstance(documents, Corpus):
        documents = list(documents)
        ids = [d.id if isinstance(d, Document) else d.get("_id", d.get("id")) if isinstance(d, dict) else None
               for d in documents]
        refuse_repeats([i for i in ids if i is not None])  # before Corpus refuses them less precisely
    corpus = documents if isinstance(documents, Corpus) else Corpus.from_documents(documents)
    empty = [i for i, d in enumerate(corpus.ids) if not str(d).strip()]
    if empty:
        raise ConfigError(f"document {empty[0] + 1} of the batch has an empty id; every document needs one")
    return corpus


def refuse_repeats(ids: list[str]) -> None:
    """Refuse a batch that names an id twice."""
    seen: set[str] = set()
    twice = list(dict.fromkeys(i for i in ids if i in seen or seen.add(i)))
    if twice:
        raise DuplicateDocumentError(twice, f"{len(twice)} id(s) appear twice in one batch: {shown(twice)}")


def pack_json(value: Any) -> np.ndarray:
    """JSON as a byte array: strings of any length in a payload without numpy's pickled objects."""
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def unpack_json(array: np.ndarray) -> Any:
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))


class Updatable:
    """Document ids, tombstones and the add/delete/upsert calls every index kind shares.

    Subclasses set ``_doc_ids`` (row -> id, deleted rows included) and implement ``prepare_add``,
    ``apply_add`` and, if they do not use tombstones, ``apply_delete``; ``_compact(keep)`` keeps
    only the rows ``keep``.
    """

    exact_updates: ClassVar[bool] = True  # scores after updates are those of a rebuild
    _doc_ids: Any = None
    _deleted: np.ndarray | None = None  # True = a deleted row (None: none deleted)
    _live_positions: dict[str, int] | None = None

    # -- ids ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._doc_ids is None:
            return 0
        return len(self._doc_ids) - (0 if self._deleted is None else int(self._deleted.sum()))

    def __contains__(self, doc_id: object) -> bool:
        return self._doc_ids is not None and doc_id in self.positions()

    def positions(self) -> dict[str, int]:
        """Live document id -> its row."""
        if self._live_positions is None:
            ids = [] if self._doc_ids is None else self._doc_ids.tolist()
            dead = self._deleted
            self._live_positions = {d: i for i, d in enumerate(ids) if dead is None or not dead[i]}
        return self._live_positions

    def _changed(self) -> None:
        """Forget what was derived from the rows (called after every change)."""
        self._live_positions = None

    # -- the three calls --------------------------------------------------------------------------
    def check_update(self, add: list[str], delete: Sequence[str] = ()) -> None:
        """Refuse ids twice in one batch, added ids already present (unless deleted in the same
        update, which is an upsert), and deleted ids not present."""
        self._check_built()  # type: ignore[attr-defined]
        refuse_repeats(add)
        live = self.positions()
        unknown = [d for d in dict.fromkeys(delete) if d not in live]
        if unknown:
            raise UnknownDocumentError(unknown)
        replaced = set(delete)
        present = [d for d in add if d in live and d not in replaced]
        if present:
            raise DuplicateDocumentError(present)

    def add(self, documents: Corpus | Iterable[Document]) -> Any:
        """Index new documents (ids not yet in the index); returns self."""
        corpus = as_corpus(documents)
        self.check_update(corpus.ids)
        self.apply_add(corpus.ids, self.prepare_add(corpus))
        return self

    def delete(self, ids: Iterable[str]) -> Any:
        """Remove documents by id (every id must be in the index); returns self."""
        ids = list(dict.fromkeys(ids))
        self.check_update([], ids)
        if ids:
            self.apply_delete(ids)
        return self

    def upsert(self, documents: Corpus | Iterable[Document]) -> Any:
        """Add documents, replacing those whose ids are already indexed; returns self."""
        corpus = as_corpus(documents)
        replaced = [d for d in corpus.ids if d in self]
        self.check_update(corpus.ids, replaced)
        self.apply_update(corpus.ids, self.prepare_add(corpus), replaced)
        return self

    def compact(self) -> Any:
        """Drop deleted rows for good (and whatever an approximate index can refit); returns self."""
        self._check_built()  # type: ignore[attr-defined]
        if self._deleted is not None and self._deleted.any():
            self._compact(np.flatnonzero(~self._deleted))
            self._deleted = None
            self._changed()
        return self

    # -- hooks --------------------------------------------------------------------------------------
    def prepare_add(self, corpus: Corpus) -> Payload:
        raise NotImplementedError

    def apply_add(self, ids: list[str], payload: Payload) -> None:
        raise NotImplementedError

    def apply_delete(self, ids: list[str]) -> None:
        """Tombstone the rows of ``ids`` (searches skip them from now on)."""
        rows = [self.positions()[d] for d in ids]
        mask = np.zeros(len(self._doc_ids), dtype=bool) if self._deleted is None else self._deleted.copy()
        mask[rows] = True
        self._deleted = mask
        self._changed()

    def _compact(self, keep: np.ndarray) -> None:
        raise NotImplementedError

    def apply_update(self, ids: list[str], payload: Payload, delete: Sequence[str] = ()) -> None:
        """Delete ``delete``, then add ``ids`` with their payload, as one change (BM25 rescores
        once): an upsert, or a log entry replayed."""
        self.begin_batch()
        try:
            if delete:
                self.apply_delete(list(delete))
            if ids:
                self.apply_add(ids, payload)
        finally:
            self.end_batch()

    def copy_for_update(self) -> Any:
        """A copy that an update can be applied to while this index goes on answering searches
        (its arrays shared, never written in place: every apply builds new ones), or None where an
        update must change the index in place (FAISS adds into its own structures)."""
        return copy.copy(self)

    def begin_batch(self) -> None:
        """Several updates follow (a log being replayed): work that each would redo may wait."""

    def end_batch(self) -> None:
        """The updates since ``begin_batch`` are all applied: finish the deferred work."""

    # -- helpers for subclasses -----------------------------------------------------------------------
    def _adopt_ids(self, ids: list[str]) -> None:
        """Rows for a fresh build: ``ids`` in order, none deleted."""
        self._doc_ids = np.asarray(ids, dtype=object)
        self._deleted = None
        self._changed()

    def _append_ids(self, ids: list[str]) -> None:
        old = len(self._doc_ids)
        self._doc_ids = np.concatenate([self._doc_ids, np.asarray(ids, dtype=object)])
        if self._deleted is not None:
            self._deleted = np.concatenate([self._deleted, np.zeros(len(self._doc_ids) - old, dtype=bool)])
        self._changed()

    def _saved_format(self) -> int:
        """The format version a save writes: 2 when it holds tombstones (``deleted.npy``), which an
        older pretriever would not read and so would return deleted documents; 1 otherwise."""
        return TOMBSTONES_FORMAT if self._excluded() is not None else 1

    def _save_deleted(self, folder: Path) -> None:
        if self._deleted is not None and self._deleted.any():
            np.save(folder / DELETED, self._deleted)

    def _load_deleted(self, folder: Path) -> None:
        path = folder / DELETED
        self._deleted = np.load(path) if path.is_file() else None
        self._changed()

    def _excluded(self) -> np.ndarray | None:
        """The deleted-row mask when any row is deleted, else None (the fast path)."""
        return self._deleted if self._deleted is not None and self._deleted.any() else None
