"""BM25 over bm25s (Lù 2024, "BM25S: Orders of magnitude faster lexical search via eager sparse
scoring"), with Snowball stemming from PyStemmer and English stopwords by default.

bm25s does the scoring; this module owns what it leaves to the caller: a title + text view of
each document, stable document ids, queries whose terms are all unknown, a manifest that records
every score-changing parameter, and an atomic, checksummed save.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever._progress import is_terminal
from pretriever.config import default_threads
from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError, ManifestError, NotBuiltError
from pretriever.types import Document, Queries, Run

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
FORMAT_VERSION = 1


# bm25s's numba kernels are not cached on disk: compiling them costs ~6 s per process, which
# only pays off for very large query batches (numba ~0.06 ms/query vs numpy ~0.15 ms/query on
# SciFact). "auto" switches to numba from this many queries, or once compiled in this process.
NUMBA_MIN_QUERIES = 50_000
_numba_compiled = False
SHORT_QUERY_TERMS = 4.0


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


class BM25Index:
    """Lexical BM25 index.

    Parameters are those that change scores; all are recorded in the manifest. ``stopwords`` is a
    language code understood by bm25s ("en") or "none"; ``stemmer`` a Snowball language
    ("english") or "none". ``n_threads`` (0 = choose per batch, see ``_threads``) and ``backend``
    ("auto", "numpy", "numba") only change speed.
    """

    kind: ClassVar[str] = "index.bm25"

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        delta: float = 0.5,
        stopwords: str = "en",
        stemmer: str = "english",
        n_threads: int = 0,
        backend: str = "auto",
        progress: bool = True,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.method = method
        self.delta = delta
        self.stopwords = stopwords
        self.stemmer = stemmer
        self.n_threads = n_threads
        self.backend = backend
        self.progress = progress
        self._retriever: Any = None
        self._doc_ids: np.ndarray | None = None
        self._corpus_info: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = f"{len(self)} docs" if self.is_built else "not built"
        return (f"BM25Index(k1={self.k1}, b={self.b}, method={self.method!r}, "
                f"stopwords={self.stopwords!r}, stemmer={self.stemmer!r}; {state})")

    # -- parameters -------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Every parameter that changes scores, as recorded in the manifest."""
        return {
            "k1": self.k1, "b": self.b, "method": self.method, "delta": self.delta,
            "stopwords": self.stopwords, "stemmer": self.stemmer, "lowercase": True,
            "token_pattern": r"(?u)\b\w\w+\b", "fields": ["title", "text"],
        }

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown BM25 method '{self.method}'; choose one of {', '.join(METHODS)}")
        if self.backend not in ("auto", "numpy", "numba"):
            raise ConfigError(f"unknown backend '{self.backend}'; choose auto, numpy or numba")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")

    def _stemmer(self) -> Any:
        if self.stemmer in ("none", "", None):
            return None
        import Stemmer

        try:
            return Stemmer.Stemmer(self.stemmer)
        except KeyError:
            raise ConfigError(
                f"unknown stemmer language '{self.stemmer}'; choose one of "
                f"{', '.join(Stemmer.algorithms())} or 'none'"
            ) from None

    def _stopwords(self) -> Any:
        return None if self.stopwords in ("none", "", None) else self.stopwords

    def _tokenize(self, texts: list[str], *, ids: bool, progress: bool) -> Any:
        import bm25s

        return bm25s.tokenize(
            texts, lower=True, stopwords=self._stopwords(), stemmer=self._stemmer(),
            return_ids=ids, show_progress=progress,
        )

    # -- build / search ---------------------------------------------------------------------
    @property
    def is_built(self) -> bool:
        return self._retriever is not None

    def __len__(self) -> int:
        return 0 if self._doc_ids is None else len(self._doc_ids)

    def build(self, corpus: Corpus | Iterable[Document]) -> BM25Index:
        """Index the title and text of every document; returns self."""
        import bm25s

        self._validate()
        if not isinstance(corpus, Corpus):
            corpus = Corpus.from_documents(corpus)
        if len(corpus) == 0:
            raise ConfigError("cannot build a BM25 index over an empty corpus")
        # bm25s draws its own tqdm bars: on a terminal only (in a log they are one unreadable line)
        bars = self.progress and is_terminal()
        tokens = self._tokenize(corpus.contents(), ids=True, progress=bars)
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method, delta=self.delta)
        retriever.index(tokens, show_progress=bars)
        self._retriever = retriever
        self._doc_ids = np.asarray(corpus.ids, dtype=object)
        self._corpus_info = corpus.fingerprint()
        return self

    def _check_built(self) -> None:
        if not self.is_built:
            raise NotBuiltError("this BM25Index is not built: call build(corpus) or BM25Index.load(path)")

    def search(self, queries: Queries, k: int = 100) -> Run:
        """Top-``k`` documents per query, leaving out documents that score 0.

        With lucene, atire and robertson those are the documents sharing no term with the query
        (robertson also floors the IDF of very common terms at 0); bm25l and bm25+ give every
        document a positive score by design. A query with no indexed term gets no results.
        """
        self._check_built()
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        assert self._doc_ids is not None
        qids = list(queries)
        run: Run = {qid: {} for qid in qids}
        if not qids:
            return run
        vocab = self._retriever.vocab_dict
        tokens = self._tokenize([queries[q] for q in qids], ids=False, progress=False)
        token_ids = [[vocab[t] for t in toks if t in vocab] for toks in tokens]
        active = [i for i, ids in enumerate(token_ids) if ids]
        if not active:
            return run
        self._retriever.backend = self._search_backend(len(active))
        docs, scores = self._retriever.retrieve(
            [token_ids[i] for i in active], k=min(k, len(self._doc_ids)), show_progress=False,
            n_threads=self._threads(token_ids, active),
        )
        names = self._doc_ids[docs]
        for row, i in enumerate(active):
            keep = scores[row] > 0
            run[qids[i]] = dict(zip(names[row][keep].tolist(), scores[row][keep].tolist()))
        return run

    def _threads(self, token_ids: list[list[int]], active: list[int]) -> int:
        """Worker threads for bm25s (0 = no pool).

        numba scores in parallel natively, so it gets every core. bm25s's numpy path loops over
        a query's terms in Python under the GIL, so a thread pool only helps short queries
        (measured: SciFact, 9.4 terms/query, 19.5 ms without a pool vs 24.2 ms with 2 threads;
        NFCorpus, 2.8 terms/query, 23.2 ms vs 19.5 ms).
        """
        if self.n_threads:
            return self.n_threads if self.n_threads > 1 else 0
        if self._retriever.backend == "numba":
            return default_threads()
        mean_terms = sum(len(token_ids[i]) for i in active) / len(active)
        return default_threads() if mean_terms <= SHORT_QUERY_TERMS else 0

    def _search_backend(self, n_queries: int) -> str:
        global _numba_compiled
        choice = self.backend
        if choice == "auto":
            big = n_queries >= NUMBA_MIN_QUERIES or _numba_compiled
            choice = "numba" if big and _numba_available() else "numpy"
        if choice == "numba":
            _numba_compiled = True
        return choice

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the index folder (bm25s arrays, document ids, manifest) atomically."""
        self._check_built()
        assert self._doc_ids is not None
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self._retriever.save(tmp / "bm25s", show_progress=False)
            with open(tmp / "doc_ids.json", "w", encoding="utf-8") as handle:
                json.dump(self._doc_ids.tolist(), handle, ensure_ascii=False)
            write_manifest(
                tmp, kind=self.kind, format_version=FORMAT_VERSION, params=self.params(),
                provenance={"corpus": self._corpus_info, "documents": len(self)},
                libraries=("bm25s", "PyStemmer"),
            )
        return path

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = False, verify: bool = True) -> BM25Index:
        """Read a folder written by ``save``, checking kind, format version and checksums."""
        import bm25s

        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION, verify=verify)
        p = manifest["params"]
        index = cls(k1=p["k1"], b=p["b"], method=p["method"], delta=p["delta"],
                    stopwords=p["stopwords"], stemmer=p["stemmer"])
        try:
            retriever = bm25s.BM25.load(path / "bm25s", mmap=mmap, show_progress=False, verbosity=0)
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: the bm25s arrays cannot be read ({exc}); rebuild") from None
        doc_ids = json.loads((path / "doc_ids.json").read_text(encoding="utf-8"))
        index._retriever = retriever
        index._doc_ids = np.asarray(doc_ids, dtype=object)
        index._corpus_info = manifest["provenance"].get("corpus", {})
        return index

    @property
    def corpus_info(self) -> dict[str, Any]:
        """Fingerprint (source, sha256, size) of the corpus this index was built from."""
        return dict(self._corpus_info)
