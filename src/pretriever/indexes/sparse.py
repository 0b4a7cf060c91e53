"""Exact search over learned sparse vectors: an inverted index held as a scipy CSC matrix (one
column of (document, weight) postings per vocabulary term), as bm25s holds BM25's.

A query's score for a document is the dot product of their sparse vectors; only the postings of
the query's terms are read (``matrix[:, terms] @ weights``), so the cost per query is the number of
postings of its terms, what the FLOPS regulariser of training minimises. The arrays are ``.npy``
files memory-mapped on load. Documents can be added (their rows appended) and deleted
(tombstones), exactly as a rebuild would score them (``indexes/updates.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever._progress import Progress
from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError
from pretriever.indexes.base import DocumentTable
from pretriever.indexes.dense import top_k
from pretriever.indexes.updates import Payload, Updatable
from pretriever.types import Queries, Run

FORMAT_VERSION = 2  # as the dense indexes: 2 when it holds tombstones
EMBEDDED_MODEL = "model"  # the encoder's folder inside an index whose encoder has no folder of its own
ENCODE_CHUNK = 2048  # documents encoded between progress updates


class SparseIndex(Updatable, DocumentTable):
    """Exact dot-product search over an encoder's sparse vectors (``encoders/sparse.py``)."""

    kind: ClassVar[str] = "index.sparse"

    def __init__(self, encoder: Any = None, *, progress: bool = True) -> None:
        self.encoder = encoder
        self.progress = progress
        self._matrix: Any = None  # CSC documents x terms
        self._doc_ids: np.ndarray | None = None
        self._spec: dict[str, Any] = {}
        self._corpus_info: dict[str, Any] = {}

    # -- building --------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {}

    def _get_encoder(self) -> Any:
        if self.encoder is None:
            raise ConfigError("a sparse index needs a sparse encoder (SparseEncoder(model_folder))")
        return self.encoder

    def _encode(self, texts: list[str]) -> Any:
        import scipy.sparse

        encoder = self._get_encoder()
        parts = []
        with Progress(len(texts), "encoding documents (sparse)", "docs", enabled=self.progress) as bar:
            for start in range(0, len(texts), ENCODE_CHUNK):
                parts.append(encoder.encode_documents(texts[start : start + ENCODE_CHUNK]))
                bar.update(len(parts[-1].indptr) - 1)
        return scipy.sparse.vstack(parts, format="csr") if parts else None

    def build(self, corpus: Corpus) -> SparseIndex:
        """Encode every document and index its terms."""
        if not isinstance(corpus, Corpus):
            corpus = Corpus.from_documents(corpus)
        if len(corpus) == 0:
            raise ConfigError("cannot build a sparse index over an empty corpus")
        self._install(self._encode(corpus.contents()), corpus.ids)
        self._corpus_info = corpus.fingerprint()
        self._spec = self._get_encoder().spec()
        return self

    def _install(self, rows: Any, ids: list[str]) -> None:
        self._matrix = rows.astype(np.float32).tocsc()
        self._adopt_ids(ids)

    # -- searching -------------------------------------------------------------------------------
    def search(self, queries: Queries, k: int = 100) -> Run:
        """Top-``k`` documents per query by dot product; documents scoring 0 are left out."""
        qids = self._query_ids(queries, k)
        if not qids:
            return {}
        return self.search_vectors(qids, self._get_encoder().encode_queries([queries[q] for q in qids]), k)

    def search_vectors(self, qids: list[str], vectors: Any, k: int) -> Run:
        """Search with sparse query vectors (CSR, one row per query) encoded elsewhere."""
        self._check_built()
        assert self._doc_ids is not None
        vectors = vectors.tocsr()
        dead = self._excluded()
        run: Run = {}
        for qid, (terms, weights) in zip(qids, _rows(vectors)):
            scores = np.asarray(self.scores(terms, weights))
            if dead is not None:
                scores[dead] = 0.0
            idx, val = top_k(scores[None, :], min(k, len(scores)))
            keep = val[0] > 0
            run[qid] = dict(zip(self._doc_ids[idx[0][keep]].tolist(), val[0][keep].astype(float).tolist()))
        return run

    def scores(self, terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Every document's dot product with the query (term ids, weights): its terms' postings."""
        matrix = self._matrix
        out = np.zeros(matrix.shape[0], dtype=np.float32)
        for term, weight in zip(terms.tolist(), weights.tolist()):
            if term >= matrix.shape[1]:
                continue
            start, end = matrix.indptr[term], matrix.indptr[term + 1]
            out[matrix.indices[start:end]] += np.float32(weight) * matrix.data[start:end]
        return out

    def stats(self) -> dict[str, float]:
        """Postings statistics: average active terms per document, and the FLOPS of a query with
        uniform term use (sum over terms of the squared fraction of documents holding it)."""
        self._check_built()
        df = np.diff(self._matrix.indptr).astype(np.float64)
        n = max(self._matrix.shape[0], 1)
        return {
            "documents": len(self),
            "terms_per_document": float(df.sum() / n),
            "flops": float(((df / n) ** 2).sum()),
        }

    # -- updates ---------------------------------------------------------------------------------
    def prepare_add(self, corpus: Corpus) -> Payload:
        rows = self._get_encoder().encode_documents(corpus.contents()).tocsr()
        return {
            "indptr": rows.indptr.astype(np.int64),
            "indices": rows.indices.astype(np.int64),
            "data": rows.data.astype(np.float32),
        }

    def apply_add(self, ids: list[str], payload: Payload) -> None:
        import scipy.sparse

        rows = scipy.sparse.csr_matrix(
            (payload["data"], payload["indices"], payload["indptr"]), shape=(len(ids), self._matrix.shape[1])
        )
        self._matrix = scipy.sparse.vstack([self._matrix.tocsr(), rows], format="csc")
        self._append_ids(ids)

    def _compact(self, keep: np.ndarray) -> None:
        self._matrix = self._matrix.tocsr()[keep].tocsc()
        self._doc_ids = self._doc_ids[keep]

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        self._check_built()
        assert self._doc_ids is not None
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            for name in ("data", "indices", "indptr"):
                np.save(tmp / f"{name}.npy", getattr(self._matrix, name))
            (tmp / "shape.json").write_text(json.dumps(list(self._matrix.shape)))
            with open(tmp / "doc_ids.json", "w", encoding="utf-8") as handle:
                json.dump(self._doc_ids.tolist(), handle, ensure_ascii=False)
            self._save_deleted(tmp)
            spec = self._spec
            if not _is_model_folder(spec.get("source")):  # built in memory (an IDF query side): kept here
                self._get_encoder().save(tmp / EMBEDDED_MODEL)
                spec = {**spec, "source": EMBEDDED_MODEL, "embedded": True}
            write_manifest(
                tmp,
                kind=self.kind,
                format_version=self._saved_format(),
                params={**self.params(), "encoder": spec},
                provenance={"corpus": self._corpus_info, "documents": len(self), **self.stats()},
                libraries=("scipy", "sentence-transformers"),
            )
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, encoder: Any = None, mmap: bool = True, verify: bool = True
    ) -> SparseIndex:
        """Read an index folder; the query encoder is loaded from the manifest's model folder
        unless ``encoder`` is given."""
        import scipy.sparse

        from pretriever.encoders.sparse import SparseEncoder

        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION, verify=verify)
        spec = manifest["params"]["encoder"]
        if spec.get("embedded"):  # the model folder inside the index, wherever the index now lies
            spec = {**spec, "source": str(path / spec["source"])}
        if encoder is not None and encoder.spec().get("weights") != spec.get("weights"):
            raise ConfigError(f"{path} was encoded by another sparse model ({spec.get('source')}) than the "
                              "encoder given; search it with its own")
        index = cls(encoder if encoder is not None else SparseEncoder(spec["source"]))
        mode = "r" if mmap else None
        arrays = [np.load(path / f"{name}.npy", mmap_mode=mode) for name in ("data", "indices", "indptr")]
        shape = tuple(json.loads((path / "shape.json").read_text()))
        index._matrix = scipy.sparse.csc_matrix(tuple(arrays), shape=shape)
        index._doc_ids = np.asarray(json.loads((path / "doc_ids.json").read_text("utf-8")), dtype=object)
        index._spec = spec
        index._corpus_info = manifest["provenance"].get("corpus", {})
        index._load_deleted(path)
        return index


class SeismicSparseIndex(SparseIndex):
    """Approximate search over the same vectors with Seismic (Bruch et al. 2024, "Efficient inverted
    indexes for approximate retrieval over learned sparse representations", pyseismic-lsr):
    posting lists pruned to ``n_postings`` and grouped into blocks with summaries, queries cut to
    their ``query_cut`` heaviest terms, blocks skipped by ``heap_factor``.

    The exact matrix is kept beside it: documents added after the build are scored exactly (a
    small delta segment merged with Seismic's results), deleted ones are filtered out, and
    ``compact()`` rebuilds the Seismic index over every live document. A saved index searches as
    the one saved (Seismic quantises its values: folding the delta in would move its scores).
    """

    kind: ClassVar[str] = "index.sparse.seismic"
    exact_updates: ClassVar[bool] = False

    def __init__(
        self,
        encoder: Any = None,
        *,
        n_postings: int = 3500,
        centroid_fraction: float = 0.1,
        summary_energy: float = 0.4,
        query_cut: int = 10,
        heap_factor: float = 0.7,
        progress: bool = True,
    ) -> None:
        super().__init__(encoder, progress=progress)
        self.n_postings = n_postings
        self.centroid_fraction = centroid_fraction
        self.summary_energy = summary_energy
        self.query_cut = query_cut
        self.heap_factor = heap_factor
        self._seismic: Any = None
        self._seismic_rows = 0  # rows covered by the Seismic index; later ones are the delta
        self._names: np.ndarray | None = None  # term ids as Seismic's strings (_term_names)

    def params(self) -> dict[str, Any]:
        return {
            "n_postings": self.n_postings,
            "centroid_fraction": self.centroid_fraction,
            "summary_energy": self.summary_energy,
            "query_cut": self.query_cut,
            "heap_factor": self.heap_factor,
        }

    def _install(self, rows: Any, ids: list[str]) -> None:
        super()._install(rows, ids)
        self._build_seismic()

    def _build_seismic(self) -> None:
        seismic = _seismic()
        rows = self._matrix.tocsr()
        names = self._term_names()
        dataset = seismic.SeismicDataset()
        dead = self._excluded()
        added = 0
        for r, (terms, weights) in enumerate(_rows(rows)):
            if len(terms) and (dead is None or not dead[r]):
                added += 1
                dataset.add_document(str(r), names[terms], weights.astype(np.float32))
        self._seismic = (
            seismic.SeismicIndex.build_from_dataset(
                dataset,
                n_postings=self.n_postings,
                centroid_fraction=self.centroid_fraction,
                summary_energy=self.summary_energy,
            )
            if added
            else None
        )
        self._seismic_rows = rows.shape[0]

    def search_vectors(self, qids: list[str], vectors: Any, k: int) -> Run:
        self._check_built()
        assert self._doc_ids is not None
        vectors = vectors.tocsr()
        dead = self._excluded()
        extra = 0 if dead is None else int(dead[: self._seismic_rows].sum())
        names = self._term_names()
        delta = self._delta()
        run: Run = {}
        for qid, (terms, weights) in zip(qids, _rows(vectors)):
            weights = weights.astype(np.float32)
            found: dict[int, float] = {}
            if self._seismic is not None and len(terms):
                hits = self._seismic.search(
                    qid, names[terms], weights, k=k + extra, query_cut=self.query_cut,
                    heap_factor=self.heap_factor,
                )
                found = {int(doc): float(score) for _, score, doc in hits}
            if delta is not None:  # documents added since Seismic was built, scored exactly
                scores = delta @ _dense_query(terms, weights, self._matrix.shape[1])
                first = self._seismic_rows
                found.update({first + i: float(v) for i, v in enumerate(scores)})
            ranked = sorted(
                ((r, s) for r, s in found.items() if s > 0 and (dead is None or not dead[r])),
                key=lambda rs: (-rs[1], rs[0]),
            )[:k]
            run[qid] = {self._doc_ids[r]: s for r, s in ranked}
        return run

    def _term_names(self) -> np.ndarray:
        """Every term id as the string Seismic names components by (converted once, not per query)."""
        names = self._names
        if names is None or len(names) < self._matrix.shape[1]:
            string = _seismic().get_seismic_string()
            names = self._names = np.arange(self._matrix.shape[1]).astype(str).astype(string)
        return names

    def _delta(self) -> Any:
        """The rows added since Seismic was built, as CSR (cached until the next change)."""
        if self._seismic_rows >= len(self._doc_ids):
            return None
        cached = getattr(self, "_delta_rows", None)
        if cached is None or cached[0] is not self._matrix:  # every update makes a new matrix
            self._delta_rows = (self._matrix, self._matrix.tocsr()[self._seismic_rows :])
        return self._delta_rows[1]

    def _compact(self, keep: np.ndarray) -> None:
        super()._compact(keep)
        self._deleted = None
        self._build_seismic()

    def compact(self) -> SeismicSparseIndex:
        """Drop deleted rows and build Seismic afresh over every live document (the delta too)."""
        self._check_built()
        if self._excluded() is not None:
            super().compact()
        elif self._seismic_rows < len(self._doc_ids):
            self._build_seismic()
        return self

    def stats(self) -> dict[str, float]:
        """``SparseIndex.stats`` plus the documents Seismic covers (the rest: the exact delta)."""
        return {**super().stats(), "seismic_documents": self._seismic_rows}

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save the index as it searches: Seismic, plus the documents added since as the exact
        delta, and the tombstones (``compact()`` first folds them into a new Seismic index)."""
        path = super().save(path, overwrite=overwrite)
        if self._seismic is not None:  # the Seismic file is rebuilt on load: it is not checksummed
            self._seismic.save(str(path / "seismic"))
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, encoder: Any = None, mmap: bool = True, verify: bool = True
    ) -> SeismicSparseIndex:
        path = Path(path)
        exact = super().load(path, encoder=encoder, mmap=mmap, verify=verify)
        manifest = read_manifest(path, verify=False)
        params = manifest["params"]
        for key in ("n_postings", "centroid_fraction", "summary_energy", "query_cut", "heap_factor"):
            setattr(exact, key, params[key])
        stored = path / "seismic.index.seismic"
        covered = manifest["provenance"].get("seismic_documents")
        if stored.is_file() and covered:
            exact._seismic = _seismic().SeismicIndex.load(str(stored))
            exact._seismic_rows = int(covered)
        else:  # written by an older pretriever, or killed before Seismic's own file was written
            exact._build_seismic()
        return exact


def _rows(matrix: Any) -> Any:
    """Each row of a CSR matrix as (term ids, weights)."""
    for row in range(matrix.shape[0]):
        span = slice(matrix.indptr[row], matrix.indptr[row + 1])
        yield matrix.indices[span], matrix.data[span]


def _is_model_folder(source: Any) -> bool:
    """Whether ``source`` names a sentence-transformers sparse model folder on this machine."""
    if not source:
        return False
    folder = Path(str(source))
    return (folder / "modules.json").is_file() and (folder / "config_sentence_transformers.json").is_file()


def _dense_query(terms: np.ndarray, weights: np.ndarray, dimensions: int) -> np.ndarray:
    query = np.zeros(dimensions, dtype=np.float32)
    query[terms] = weights
    return query


def _seismic() -> Any:
    try:
        import seismic
    except ImportError:
        from pretriever.errors import MissingDependencyError

        raise MissingDependencyError("pyseismic-lsr", extra="sparse", feature="the Seismic index") from None
    return seismic
