"""Datasets in the BEIR layout, resolved by name under the data root or by path.

A dataset folder holds ``corpus.jsonl`` (or ``.tsv``), ``queries.jsonl`` (or ``.tsv``) and
``qrels/<split>.tsv`` (BEIR) or ``qrels/<split>.txt`` (TREC). Each file is read at most once per
``Dataset`` and validated as it is read: qrels are checked against the loaded queries and corpus.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pretriever.config import DATA_ENV, data_root
from pretriever.data.corpus import Corpus, read_corpus, read_queries
from pretriever.data.download import BEIR_MD5, download_beir, offline_help
from pretriever.data.qrels import QrelsReport, read_qrels
from pretriever.errors import DataNotFoundError
from pretriever.types import Qrels, Queries

_QRELS_SUFFIXES = (".tsv", ".txt", ".trec", ".qrels")


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in (".jsonl", ".tsv"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def resolve_dataset(name_or_path: str | Path, *, download: bool = True, progress: bool = True) -> Path:
    """Where a dataset lives: an existing path, or ``<data root>/<name>`` (downloading BEIR sets).

    Raises DataNotFoundError saying where it looked and what to do.
    """
    candidate = Path(name_or_path).expanduser()
    text = str(name_or_path)
    looks_like_path = "/" in text or "\\" in text or text.startswith(".")
    if candidate.exists():
        return candidate
    if looks_like_path:
        raise DataNotFoundError(f"{candidate}: no such file or folder")
    root = data_root()
    named = root / text
    if named.exists():
        return named
    if text.lower() in BEIR_MD5:
        if not download:
            raise DataNotFoundError(
                f"dataset '{text}' is not under {root} ({DATA_ENV}); {offline_help(text.lower(), root)}"
            )
        return download_beir(text.lower(), root, progress=progress)
    available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise DataNotFoundError(
        f"no dataset '{text}' under {root} (set by {DATA_ENV}); available there: "
        f"{', '.join(available) or 'none'}. Give a path to a BEIR folder, or one of the BEIR "
        f"names to download: {', '.join(sorted(BEIR_MD5))}"
    )


class Dataset:
    """A BEIR-layout dataset, loaded lazily and at most once per file.

    ``lenient`` turns qrels rows that point at unknown queries or documents from errors into
    dropped rows, counted in :attr:`warnings`; ``progress`` reports reading a large corpus.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, lenient: bool = False,
                 progress: bool = True) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        self.lenient = lenient
        self.progress = progress
        self.warnings: list[str] = []
        self._qrels: dict[str, tuple[Qrels, QrelsReport]] = {}

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, path={str(self.path)!r})"

    @functools.cached_property
    def corpus(self) -> Corpus:
        """The documents, read and validated on first access."""
        if self.path.is_file():
            return read_corpus(self.path, progress=self.progress)
        found = _find(self.path, "corpus")
        if found is None:
            raise DataNotFoundError(f"{self.path}: no corpus.jsonl or corpus.tsv in this folder")
        return read_corpus(found, progress=self.progress)

    @functools.cached_property
    def queries(self) -> Queries:
        """All queries of every split, read and validated on first access."""
        found = None if self.path.is_file() else _find(self.path, "queries")
        if found is None:
            raise DataNotFoundError(
                f"{self.path}: no queries.jsonl or queries.tsv; a dataset needs queries to be "
                "searched or evaluated"
            )
        return read_queries(found)

    @property
    def splits(self) -> list[str]:
        """Names of the qrels files under ``qrels/`` (e.g. train, dev, test)."""
        folder = self.path / "qrels"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.iterdir() if p.suffix in _QRELS_SUFFIXES)

    def _qrels_path(self, split: str) -> Path:
        for suffix in _QRELS_SUFFIXES:
            path = self.path / "qrels" / f"{split}{suffix}"
            if path.is_file():
                return path
        raise DataNotFoundError(
            f"{self.path}: no qrels for split '{split}'; available splits: "
            f"{', '.join(self.splits) or 'none'}"
        )

    def qrels(self, split: str = "test") -> Qrels:
        """Judgements of one split, validated against the queries and the corpus."""
        if split not in self._qrels:
            path = self._qrels_path(split)
            qrels, report = read_qrels(
                path, queries=self.queries, documents=self.corpus.positions, lenient=self.lenient
            )
            self.warnings.extend(report.warnings(path))
            self._qrels[split] = (qrels, report)
        return self._qrels[split][0]

    def split_queries(self, split: str = "test") -> Queries:
        """The queries that have judgements in ``split``, in qrels order."""
        qrels = self.qrels(split)
        return {qid: self.queries[qid] for qid in qrels}

    def stats(self) -> dict[str, Any]:
        """Counts for ``pretriever data check``: loads and validates every file."""
        corpus = self.corpus
        words = [len(t.split()) + len(x.split()) for t, x in zip(corpus.titles, corpus.texts)]
        stats: dict[str, Any] = {
            "name": self.name,
            "path": str(self.path),
            "documents": len(corpus),
            "empty_documents": corpus.n_empty,
            "documents_with_title": sum(1 for t in corpus.titles if t.strip()),
            "mean_words_per_document": round(sum(words) / max(1, len(words)), 1),
            "max_words_per_document": max(words, default=0),
            "splits": {},
        }
        if self.path.is_dir() and _find(self.path, "queries") is not None:
            stats["queries"] = len(self.queries)
            stats["empty_queries"] = sum(1 for q in self.queries.values() if not q.strip())
        for split in self.splits:
            qrels = self.qrels(split)
            report = self._qrels[split][1]
            grades: dict[str, int] = {}
            for judged in qrels.values():
                for grade in judged.values():
                    grades[str(grade)] = grades.get(str(grade), 0) + 1
            stats["splits"][split] = {
                "queries": len(qrels),
                "judgements": sum(len(j) for j in qrels.values()),
                "relevant": sum(1 for j in qrels.values() for g in j.values() if g > 0),
                "queries_without_relevant": sum(1 for j in qrels.values() if max(j.values()) <= 0),
                "grades": dict(sorted(grades.items())),
                "duplicate_rows": report.duplicate_rows,
                "dropped_rows": report.dropped_rows,
            }
        stats["warnings"] = list(self.warnings)
        return stats


def load_dataset(name_or_path: str | Path, *, lenient: bool = False, download: bool = True,
                 progress: bool = True) -> Dataset:
    """Resolve a dataset by name (under ``$PRETRIEVER_DATA``) or path; files load lazily.
    ``progress`` reports a download and the reading of a large corpus."""
    path = resolve_dataset(name_or_path, download=download, progress=progress)
    name = Path(str(name_or_path)).name if path.is_dir() else path.stem
    return Dataset(path, name=name, lenient=lenient, progress=progress)
