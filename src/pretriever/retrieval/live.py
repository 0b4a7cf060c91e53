"""An index folder that takes updates while it is searched: every update atomic and durable.

The folder as ``build``/``index``/``save`` wrote it is never modified. Updates live beside it::

    DIR/live/log/000000000001.npz   one file per acknowledged update: the operation, the ids, the
                                    documents' texts and the index's payload (``indexes/updates.py``:
                                    vectors, token vectors or analysed terms; replayed with no model)
    DIR/live/snapshot-000000000042/ the index with every update through 42 applied (``compact``)
    DIR/live/lock                   held by the one process allowed to write

Opening reads the newest snapshot (or DIR itself), then replays the log entries after it in order.
An update is validated, prepared (encoding, outside any lock searches wait on), written as a log
entry (a temporary file, fsync, rename, fsync of the folder: the rename is the commit point),
then applied in memory under a brief exclusive lock; the call returns after that. A process
killed at any moment leaves the folder at the state before the rename or after it, and
``LiveIndex.open`` (and ``load_index``) read it back. A snapshot appears by rename too, after its
files are fsynced; the log entries it covers are removed only after that.

Searches share a readers-writer lock with the in-memory apply step, so a search sees an update
entirely or not at all. The texts of the documents (what ``get`` and RAG context read) come from
the index folder (a pipeline with a cross-encoder keeps them), the corpus it was built from (the
manifest names it; checked by checksum), or ``corpus=``; added documents' texts are in the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.data.corpus import Corpus, read_corpus
from pretriever.errors import (
    ConfigError,
    DataNotFoundError,
    ManifestError,
    PretrieverError,
    TextsUnavailableError,
    UnknownDocumentError,
)
from pretriever.indexes.updates import as_corpus, pack_json, unpack_json
from pretriever.types import Document, Queries, Run

LIVE = "live"
LOG = "log"
SNAPSHOT = "snapshot-"
TEXTS = "texts.jsonl"
STATE = "live.json"
COMPACT_EVERY = 1000  # log entries replayed at open before a background compaction is started


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


class _ReadWriteLock:
    """Many searches at once, or one update alone; a waiting update goes before new searches."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _entries(log: Path) -> list[tuple[int, Path]]:
    """Committed log entries (seq, path) in order; temporary files of an interrupted write are not."""
    if not log.is_dir():
        return []
    found = []
    for path in log.iterdir():
        if path.suffix == ".npz" and path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


def _snapshots(live: Path) -> list[tuple[int, Path]]:
    """Complete snapshots (seq, path), newest last."""
    if not live.is_dir():
        return []
    found = []
    for path in live.iterdir():
        seq = path.name[len(SNAPSHOT):]
        if path.name.startswith(SNAPSHOT) and seq.isdigit() and (path / STATE).is_file():
            found.append((int(seq), path))
    return sorted(found)


def _read_entry(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            meta = unpack_json(data["meta"])
            payload = {k[len("payload/"):]: data[k] for k in data.files if k.startswith("payload/")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ManifestError(
            f"{path}: an update log entry cannot be read ({exc}); move it and every later entry out of "
            f"{path.parent} to return to the state before it") from None
    return meta, payload


class LiveIndex:
    """A loaded index folder plus its update log; thread-safe search, add, delete and upsert.

    ``open(path)`` takes the folder's writer lock (one writing process per folder);
    ``readonly=True`` reads the current state without it (what ``load_index`` does).
    """

    def __init__(self, path: Path, index: Any, seq: int, snapshot_seq: int, texts: dict[str, tuple[str, str]],
                 texts_complete: bool, lock_handle: Any = None, compact_every: int = COMPACT_EVERY,
                 corpus: str | Path | Corpus | bool | None = None) -> None:
        self.path = path
        self.index = index
        self.kind: str = getattr(index, "kind", type(index).__name__)
        self.seq = seq
        self.snapshot_seq = snapshot_seq
        self.compact_every = compact_every
        self._texts = texts
        self._texts_complete = texts_complete
        self._lock_handle = lock_handle
        self._rw = _ReadWriteLock()
        self._writer = threading.Lock()
        self._compacting: threading.Thread | None = None
        self._broken: str | None = None  # set when an update failed after its commit
        self._corpus = corpus
        self._follows = lock_handle is None  # a reader: catches up with the writer's log
        self._log_stamp = _stamp(path / LIVE / LOG)

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, corpus: str | Path | Corpus | None = None, readonly: bool = False,
             compact_every: int = COMPACT_EVERY, texts: bool = True) -> LiveIndex:
        """Load ``path`` at its latest acknowledged state. ``corpus``: the documents' texts, when
        neither the folder nor the corpus its manifest names has them (``texts=False``: none read).
        ``readonly``: no writer lock; searches pick up updates that the writing process commits."""
        path = Path(path)
        if not path.is_dir():
            raise DataNotFoundError(f"{path}: no such index folder")
        handle = None if readonly else _take_lock(path)
        corpus = corpus if texts else False
        try:
            index, seq, snapshot_seq, found, complete = _load_state(path, corpus)
            if handle is not None:
                _remove_leftovers(path / LIVE, snapshot_seq)
        except BaseException:
            if handle is not None:
                handle.close()
            raise
        opened = cls(path, index, seq, snapshot_seq, found, complete, handle, compact_every, corpus)
        if handle is not None and seq - snapshot_seq >= compact_every:
            opened._compact_in_background()
        return opened

    def refresh(self) -> None:
        """A reader's catch-up: apply the log entries the writing process committed since (reload
        from its newest snapshot if it compacted them away). Cheap when nothing changed: one stat."""
        if not self._follows:  # the writer: its own updates are applied as they are made
            return
        stamp = _stamp(self.path / LIVE / LOG)
        if stamp == self._log_stamp:
            return
        with self._writer:
            pending = [s for s, _ in _entries(self.path / LIVE / LOG) if s > self.seq]
            texts = dict(self._texts)
            try:
                updated = self.index.copy_for_update()
                if updated is None or (pending and pending[0] != self.seq + 1):
                    raise DataNotFoundError("compacted meanwhile")
                seq = _replay(updated, texts, self.path / LIVE / LOG, self.seq)
            except (DataNotFoundError, ManifestError, OSError):  # compacted meanwhile: reload
                updated, seq, self.snapshot_seq, texts, self._texts_complete = _load_state(
                    self.path, self._corpus)
            with self._rw.write():
                self.index, self.seq, self._texts = updated, seq, texts
            self._log_stamp = stamp

    # -- reading ------------------------------------------------------------------------------------
    def search(self, queries: Queries, k: int = 10, *, member: str | None = None, rerank: bool = True) -> Run:
        """Top-``k`` per query; ``member``: one pipeline member's own run; ``rerank=False``: a
        pipeline's fused first stage without its rerank stage."""
        self.refresh()
        self.check_member(member)
        with self._rw.read():
            if member is not None:
                return self.index.retrievers[member].search(queries, k=k)
            if not rerank and getattr(self.index, "reranker", None) is not None:
                return self.index.first_stage(queries, k)
            return self.index.search(queries, k=k)

    def members(self) -> list[str]:
        """A pipeline's member names ([] for a single index)."""
        return list(getattr(self.index, "retrievers", {}))

    def check_member(self, member: str | None) -> None:
        """Refuse a ``member`` this index does not have (None: the whole index)."""
        if member is None:
            return
        members = self.members()
        if not members:
            raise ConfigError(f"member {member!r} given, but this index ({self.kind}) is a single index, "
                              "not a pipeline; leave member out")
        if member not in members:
            raise ConfigError(f"unknown member {member!r}; this pipeline's members are: {', '.join(members)}")

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.index

    @property
    def has_texts(self) -> bool:
        """Whether every document's text is at hand (for ``get`` and RAG context)."""
        return self._texts_complete

    def texts(self) -> Mapping[str, str]:
        """Document id -> contents (title and text joined, as indexes see them), as of this call:
        updates replace the table rather than change it."""
        self.refresh()
        return _Contents(self._texts)

    def get(self, doc_id: str) -> Document:
        """The document ``doc_id`` as indexed."""
        self.refresh()
        with self._rw.read():
            known = doc_id in self.index
            fields = self._texts.get(doc_id)
        if not known:
            raise UnknownDocumentError([doc_id])
        if fields is None:
            raise TextsUnavailableError(
                f"the text of '{doc_id}' is not at hand: this index keeps vectors or terms only, and the "
                "corpus it was built from was not found; open it with the corpus (`serve --corpus FILE`)")
        return Document(doc_id, fields[1], fields[0])

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "documents": len(self), "seq": self.seq, "snapshot": self.snapshot_seq,
                "pending_updates": self.seq - self.snapshot_seq, "has_texts": self.has_texts,
                "exact_updates": bool(getattr(self.index, "exact_updates", True))}

    # -- writing ------------------------------------------------------------------------------------
    def add(self, documents: Iterable[Document], *, upsert: bool = False) -> int:
        """Index ``documents`` (``upsert``: replacing those already indexed); durable when it returns.
        Returns the update's sequence number."""
        corpus = as_corpus(documents)
        with self._writing():
            replaced = [d for d in corpus.ids if d in self.index] if upsert else []
            self.index.check_update(corpus.ids, replaced)
            payload = self.index.prepare_add(corpus)
            meta = {"op": "upsert" if replaced else "add", "ids": corpus.ids, "delete": replaced,
                    "docs": [[t, x] for t, x in zip(corpus.titles, corpus.texts)]}
            return self._commit(meta, payload)

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; durable when it returns. Returns the update's sequence number."""
        ids = list(dict.fromkeys(ids))
        with self._writing():
            self.index.check_update([], ids)
            if len(ids) >= len(self.index):
                raise ConfigError(f"deleting {len(ids)} document(s) would leave the index empty; keep at "
                                  "least one, or build a new index")
            return self._commit({"op": "delete", "ids": [], "delete": ids, "docs": []}, {})

    def compact(self) -> None:
        """Write a snapshot with every update applied (tombstoned rows dropped), then drop the log
        entries it covers. Searches go on meanwhile; updates wait."""
        with self._writing():
            self._compact()

    def close(self) -> None:
        """Wait for an update or compaction in progress, then release the writer lock."""
        thread = self._compacting
        if thread is not None:
            thread.join()
        with self._writer:
            self._closed = True
            if self._lock_handle is not None:
                self._lock_handle.close()
                self._lock_handle = None

    def __enter__(self) -> LiveIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self._writer:
            if self._lock_handle is None:
                raise ConfigError(f"{self.path} was opened read-only or is closed; open it with "
                                  "LiveIndex.open(path) to update it")
            if self._broken:
                raise PretrieverError(f"{self.path}: an update failed after it was committed "
                                      f"({self._broken}); reopen the index (restart the server)")
            yield

    def _commit(self, meta: dict[str, Any], payload: dict[str, np.ndarray]) -> int:
        """Apply to a copy (searches go on meanwhile), commit the log entry, swap the copy in. An
        update that cannot be applied is refused before anything is written. An index that cannot
        be copied cheaply (FAISS) is changed in place after the commit, searches paused."""
        seq = self.seq + 1
        updated = self.index.copy_for_update()
        if updated is not None:
            _apply(updated, {}, meta, payload)
        texts = dict(self._texts)  # replaced, never changed: readers may hold the old table
        _apply_texts(texts, meta)
        _write_entry(self.path / LIVE / LOG, seq, meta, payload)
        with self._rw.write():
            if updated is None:
                try:
                    _apply(self.index, {}, meta, payload)
                except BaseException as exc:
                    self._broken = str(exc) or type(exc).__name__
                    raise
                updated = self.index
            self.index, self._texts, self.seq = updated, texts, seq
        if self.seq - self.snapshot_seq >= self.compact_every:
            self._compact_in_background()
        return seq

    def _compact(self) -> None:
        live = self.path / LIVE
        seq = self.seq
        final = live / f"{SNAPSHOT}{seq:012d}"
        if seq == self.snapshot_seq and (seq == 0 or final.is_dir()):
            return  # nothing new since the last snapshot
        tmp = live / f".{SNAPSHOT}{seq:012d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        compacted = self.index.copy_for_update()
        if compacted is None:  # compacted in place, searches paused
            with self._rw.write():
                self.index.compact()
            compacted = self.index
        else:
            compacted.compact()
            with self._rw.write():
                self.index = compacted
        compacted.save(tmp)
        with open(tmp / TEXTS, "w", encoding="utf-8") as handle:
            for doc_id, (title, text) in self._texts.items():
                if doc_id in compacted:
                    handle.write(json.dumps({"_id": doc_id, "title": title, "text": text},
                                            ensure_ascii=False) + "\n")
        (tmp / STATE).write_text(json.dumps({"seq": seq}))
        _fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete one (no live.json) left by a crash
        os.replace(tmp, final)
        _fsync_dir(live)
        self.snapshot_seq = seq
        _remove_leftovers(live, seq)

    def _compact_in_background(self) -> None:
        if self._compacting is not None and self._compacting.is_alive():
            return

        def run() -> None:
            with contextlib.suppress(PretrieverError, OSError):  # the log still holds every update
                self.compact()

        self._compacting = threading.Thread(target=run, name="pretriever-compact", daemon=True)
        self._compacting.start()


class _Contents(Mapping[str, str]):
    """Read-only id -> contents over the live texts."""

    def __init__(self, texts: dict[str, tuple[str, str]]) -> None:
        self._texts = texts

    def __getitem__(self, doc_id: str) -> str:
        title, text = self._texts[doc_id]
        return f"{title} {text}" if title else text

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._texts

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


def _stamp(log: Path) -> int:
    """Changes whenever an entry is added to or removed from ``log`` (its modification time)."""
    try:
        return os.stat(log).st_mtime_ns
    except FileNotFoundError:
        return 0


def _load_state(path: Path, corpus: str | Path | Corpus | bool | None
                ) -> tuple[Any, int, int, dict[str, tuple[str, str]], bool]:
    """The index at its newest snapshot plus the log after it, its sequence numbers and texts
    (``corpus=False``: no texts). Retried when a compaction in another process removes the
    snapshot or entries being read."""
    from pretriever.retrieval.loading import load_plain_index

    live = path / LIVE
    for attempt in range(5):
        snapshots = _snapshots(live)
        snapshot_seq, folder = snapshots[-1] if snapshots else (0, path)
        try:
            index = load_plain_index(folder)
            if corpus is False:
                texts, complete = {}, False
            else:
                texts, complete = _base_texts(path, folder, index, corpus)
            seq = _replay(index, texts, live / LOG, snapshot_seq)
            return index, seq, snapshot_seq, texts, complete
        except (DataNotFoundError, ManifestError, FileNotFoundError):
            if attempt == 4 or _snapshots(live) == snapshots:
                raise  # not a race with a compaction: a real problem, reported as is
    raise AssertionError("unreachable")


def _take_lock(path: Path) -> Any:
    import fcntl

    live = path / LIVE
    created = not (live / LOG).is_dir()
    (live / LOG).mkdir(parents=True, exist_ok=True)
    if created:  # the folders themselves must survive a crash, or the first entries go with them
        _fsync_dir(live)
        _fsync_dir(path)
    handle = open(live / "lock", "a+")  # noqa: SIM115 - held open for the lifetime of the LiveIndex
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"{path} is already open for updates in another process (a running `pretriever "
                          "serve`?); stop it, or read the index without updating it") from None
    return handle


def _write_entry(log: Path, seq: int, meta: dict[str, Any], payload: dict[str, np.ndarray]) -> None:
    """Write log entry ``seq``: complete and fsynced under a temporary name, then renamed."""
    log.mkdir(parents=True, exist_ok=True)
    final = log / f"{seq:012d}.npz"
    if final.exists():
        raise ManifestError(f"{final} already exists: another process wrote to this index; reopen it")
    tmp = log / f".{seq:012d}.tmp"
    arrays = {"meta": pack_json({**meta, "seq": seq}), **{f"payload/{k}": v for k, v in payload.items()}}
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(log)


def _apply(index: Any, texts: dict[str, tuple[str, str]], meta: dict[str, Any],
           payload: dict[str, np.ndarray]) -> None:
    index.apply_update(meta["ids"], payload, meta["delete"])
    _apply_texts(texts, meta)


def _apply_texts(texts: dict[str, tuple[str, str]], meta: dict[str, Any]) -> None:
    for doc_id in meta["delete"]:
        texts.pop(doc_id, None)
    for doc_id, (title, text) in zip(meta["ids"], meta["docs"]):
        texts[doc_id] = (title, text)


def _replay(index: Any, texts: dict[str, tuple[str, str]], log: Path, after: int) -> int:
    """Apply the log entries after ``after`` in order; returns the last sequence number."""
    seq = after
    pending = [(s, p) for s, p in _entries(log) if s > after]
    if not pending:
        return seq
    index.begin_batch()
    try:
        for number, path in pending:
            if number != seq + 1:
                raise ManifestError(f"{log}: update {seq + 1} is missing before {path.name}; the log was "
                                    "edited by hand: restore the missing file")
            if not path.is_file():
                raise DataNotFoundError(f"{path} went away while it was read")
            meta, payload = _read_entry(path)
            _apply(index, texts, meta, payload)
            seq = number
    finally:
        index.end_batch()
    return seq


def _base_texts(path: Path, folder: Path, index: Any, corpus: str | Path | Corpus | None
                ) -> tuple[dict[str, tuple[str, str]], bool]:
    """The texts of the documents in ``folder`` (the base or a snapshot), and whether all are known."""
    sources: list[Path | Corpus] = []
    if corpus is not None:
        sources.append(corpus if isinstance(corpus, Corpus) else Path(corpus))
    for candidate in (folder / TEXTS, path / "documents.jsonl"):
        if candidate.is_file():
            sources.append(candidate)
    info = getattr(index, "corpus_info", None) or {}
    if info.get("source") and Path(info["source"]).is_file():
        sources.append(Path(info["source"]))
    wanted = set(getattr(index, "positions", dict)())
    texts: dict[str, tuple[str, str]] = {}
    for source in sources:  # the first source that has a document's text gives it
        docs = source if isinstance(source, Corpus) else read_corpus(source, progress=False)
        if source == Path(info.get("source") or "") and docs.sha256 != info.get("sha256"):
            continue  # the file the index was built from has changed since
        for d, t, x in zip(docs.ids, docs.titles, docs.texts):
            if d in wanted and d not in texts:
                texts[d] = (t, x)
        if len(texts) == len(wanted):
            break
    return texts, len(texts) == len(wanted)


def _remove_leftovers(live: Path, snapshot_seq: int) -> None:
    """Log entries a snapshot covers, older snapshots, and temporary files of interrupted writes."""
    for seq, path in _entries(live / LOG):
        if seq <= snapshot_seq:
            path.unlink(missing_ok=True)
    for path in live.glob(f"{SNAPSHOT}*"):  # complete or not (a crash mid-removal leaves no live.json)
        seq = path.name[len(SNAPSHOT):]
        if seq.isdigit() and int(seq) < snapshot_seq:
            shutil.rmtree(path, ignore_errors=True)
    for stray in [*live.glob(".*.tmp*"), *(live / LOG).glob(".*.tmp*")]:
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
        else:
            stray.unlink(missing_ok=True)


def current_index(path: str | Path) -> Any:
    """The index in ``path`` at its latest acknowledged state (what ``load_index`` returns for a
    folder that has taken updates); no texts are read."""
    return LiveIndex.open(path, readonly=True, texts=False).index


def has_updates(path: str | Path) -> bool:
    """Whether ``path`` has committed updates or snapshots beside its saved index."""
    live = Path(path) / LIVE
    return bool(_entries(live / LOG) or _snapshots(live))
