"""Dense indexes: exact inner-product search over memory-mapped vectors (Karpukhin et al. 2020,
"Dense Passage Retrieval"), sharing the encode/save/load machinery with the FAISS indexes.

Exact search multiplies the query matrix with the document matrix in row chunks and keeps a
running top-k, so memory stays bounded by ``chunk_rows`` even when the vectors (opened with
``mmap``) are larger than RAM.

Documents added after the build are encoded by the index's document encoder and appended; deleted
ones are tombstoned (``indexes/updates.py``). A document's vector does not depend on the others,
so exact search after updates returns what a rebuild would (up to the last bits that batching
changes in an encoder's output). An updated index holds its vectors in RAM (each add copies them:
a few ms at SciFact's size) until a compaction writes a snapshot, memory-mapped again on reopening.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever.data.corpus import Corpus
from pretriever.encoders.base import Encoder
from pretriever.encoders.dense import DenseEncoder, check_compatible, encoder_from_spec
from pretriever.encoding import assemble, encode_shard
from pretriever.errors import ConfigError, NotBuiltError
from pretriever.feedback import Rocchio, feedback_from_dict
from pretriever.feedback import rocchio as rocchio_method
from pretriever.indexes.base import DocumentTable
from pretriever.indexes.updates import Payload, Updatable
from pretriever.types import Queries, Run

FORMAT_VERSION = 2  # 2: may hold deleted.npy (tombstones); written only then
EMBEDDED_MODEL = "model"  # the encoder's folder inside an index saved with embed_encoder


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k (indices, values) of a score matrix, sorted by descending score."""
    n = scores.shape[1]
    k = min(k, n)
    if k == n:
        idx = np.broadcast_to(np.arange(n), scores.shape)
    else:
        idx = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    vals = np.take_along_axis(scores, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


QUERY_PROGRESS_FROM = 500  # queries: below that, encoding them takes seconds and says nothing
SCORE_CELLS = 1 << 24  # query x document scores held at once: 64 MiB of float32


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int, chunk_rows: int = 65_536,
                 exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product top-k over ``docs``, bounded in memory whatever the corpus and query count.

    Documents are read ``chunk_rows`` rows at a time (so a memory-mapped matrix larger than RAM
    works) and queries are scored in blocks so that a block's score matrix stays within
    ``SCORE_CELLS`` cells; a running top-k per query is merged after each chunk. Rows where
    ``exclude`` is True score -inf (the caller drops those results).
    """
    n, nq = docs.shape[0], queries.shape[0]
    k = min(k, n)
    best_idx = np.zeros((nq, 0), dtype=np.int64)
    best_val = np.zeros((nq, 0), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        block = np.asarray(docs[start : start + chunk_rows], dtype=np.float32)
        step = max(1, SCORE_CELLS // block.shape[0])
        idx = np.empty((nq, min(k, block.shape[0])), dtype=np.int64)
        val = np.empty(idx.shape, dtype=np.float32)
        skip = None if exclude is None else exclude[start : start + block.shape[0]]
        for q in range(0, nq, step):
            scores = queries[q : q + step] @ block.T
            if skip is not None:
                scores[:, skip] = -np.inf
            i, v = top_k(scores, k)
            idx[q : q + step], val[q : q + step] = i + start, v
        if best_idx.shape[1] == 0:
            best_idx, best_val = idx, val
            continue
        merged_idx = np.concatenate([best_idx, idx], axis=1)
        keep, best_val = top_k(np.concatenate([best_val, val], axis=1), k)
        best_idx = np.take_along_axis(merged_idx, keep, axis=1)
    return best_idx, best_val


class DenseIndexBase(Updatable, DocumentTable):
    """Encoding, persistence and query handling shared by every dense index.

    Subclasses implement ``_fit(vectors)``, ``_search_vectors(queries, k)``, ``_save_extra`` and
    ``_load_extra`` (and ``_doc_vectors(rows)`` if they do not keep the raw vectors).
    ``feedback``: Rocchio options (vector pseudo-relevance feedback on every search) or None.
    """

    kind: ClassVar[str] = "index.dense"
    stores_vectors: ClassVar[bool] = True

    def __init__(
        self,
        encoder: str | Encoder = "minilm",
        *,
        batch_size: int = 32,
        dtype: str = "float32",
        work_dir: str | Path | None = None,
        progress: bool = True,
        feedback: Rocchio | None = None,
    ) -> None:
        if feedback is not None and not isinstance(feedback, Rocchio):
            raise ConfigError(f"a dense index takes rocchio feedback, not {feedback.name}: give "
                              f"{feedback.name} to the BM25 index, Rocchio() here")
        self.feedback = feedback
        self.encoder = encoder
        self.batch_size = batch_size
        self.dtype = dtype
        self.work_dir = work_dir
        self.progress = progress
        self._encoder: Encoder | None = None
        self._vectors: np.ndarray | None = None
        self._doc_ids: np.ndarray | None = None
        self._spec: dict[str, Any] = {}
        self._query_spec: dict[str, Any] | None = None  # asymmetric (ADORE): queries' own encoder
        self._corpus_info: dict[str, Any] = {}
        self.notes: list[str] = []
        # save a copy of the (local) model folder inside the index, so that the folder searches on
        # its own (`pretriever build` does this for the models it trained in its work folder)
        self.embed_encoder = False

    # -- subclass hooks ------------------------------------------------------------------------
    def _fit(self, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "batch_size": self.batch_size,
                "feedback": self.feedback.to_dict() if self.feedback else None,
                **({"embedded_encoder": True} if self.embed_encoder else {})}

    def _doc_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of documents at ``rows`` (any shape of row numbers; -1 = none, NaN rows)."""
        assert self._vectors is not None
        out = np.asarray(self._vectors[np.maximum(rows, 0).ravel()], dtype=np.float32)
        out[rows.ravel() < 0] = np.nan
        return out.reshape(*rows.shape, -1)

    def _save_extra(self, folder: Path) -> None:
        """Write implementation files (the vectors are written by the base class)."""

    def _load_extra(self, folder: Path, params: dict[str, Any]) -> None:
        """Read implementation files; ``self._vectors`` is already set."""

    def _add_vectors(self, vectors: np.ndarray) -> None:
        """Index vectors of documents appended after the current rows."""
        raise NotImplementedError

    # -- updates -------------------------------------------------------------------------------
    def document_encoder(self) -> Encoder:
        """The encoder of the documents: the query encoder, unless queries have their own (ADORE)."""
        if self._query_spec is None:
            return self.get_encoder()
        if getattr(self, "_doc_encoder", None) is None:
            self._doc_encoder = encoder_from_spec(self._spec)
        return self._doc_encoder

    def prepare_add(self, corpus: Corpus) -> Payload:
        """The documents' vectors, encoded as the build encodes them, in the index's dtype."""
        vectors = np.asarray(self.document_encoder().encode_documents(corpus.contents()), dtype=np.float32)
        return {"vectors": vectors.astype(self.dtype)}

    def apply_add(self, ids: list[str], payload: Payload) -> None:
        vectors = np.asarray(payload["vectors"])
        dim = self._dimension()
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or vectors.shape[1] != dim:
            raise ConfigError(f"{vectors.shape} vectors given for {len(ids)} documents of size {dim}")
        self._add_vectors(vectors.astype(self.dtype, copy=False))
        self._append_ids(ids)

    def _dimension(self) -> int:
        assert self._vectors is not None
        return int(self._vectors.shape[1])

    # -- shared machinery ----------------------------------------------------------------------
    def get_encoder(self) -> Encoder:
        if self._encoder is None:
            enc = self.encoder
            self._encoder = DenseEncoder(enc, batch_size=self.batch_size) if isinstance(enc, (str, Path)) \
                else enc
        return self._encoder

    def build(self, corpus: Corpus) -> DenseIndexBase:
        """Encode the corpus (resumably, in ``work_dir`` if given) and index the vectors."""
        if not isinstance(corpus, Corpus):
            corpus = Corpus.from_documents(corpus)
        if len(corpus) == 0:
            raise ConfigError("cannot build a dense index over an empty corpus")
        encoder = self.get_encoder()
        keep = self.work_dir is not None
        work = Path(self.work_dir) if keep else Path(tempfile.mkdtemp(prefix="pretriever-encode-"))
        try:
            encode_shard(encoder, corpus, work, batch_size=self.batch_size, dtype=self.dtype,
                         progress=self.progress)
            vectors_path = work / "vectors.npy"
            assemble(work, vectors_path)
            # in memory: the work folder may go away
            self._install(np.load(vectors_path), corpus, encoder.spec())
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
        return self

    def build_from_shards(self, corpus: Corpus, work_dir: str | Path) -> DenseIndexBase:
        """Index the vectors that ``--shard I/N`` jobs wrote into ``work_dir`` (all finished)."""
        work_dir = Path(work_dir)
        vectors_path = work_dir / "vectors.npy"
        job, _ = assemble(work_dir, vectors_path)
        if job["corpus"]["sha256"] != corpus.sha256 or job["corpus"]["documents"] != len(corpus):
            raise ConfigError(f"{work_dir} was encoded from another corpus than the one given")
        self.dtype = job["dtype"]
        self.batch_size = job["batch_size"]
        self._encoder = encoder_from_spec(job["encoder"])
        self._install(np.load(vectors_path), corpus, job["encoder"])
        return self

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, corpus: Corpus, encoder: Encoder, **params: Any
                     ) -> DenseIndexBase:
        """Index vectors that were already encoded by ``encoder`` (one row per corpus document),
        e.g. to turn an exact index into an HNSW one without encoding the corpus again."""
        if vectors.shape[0] != len(corpus):
            raise ConfigError(f"{vectors.shape[0]} vectors given for {len(corpus)} documents")
        index = cls(encoder, **params)
        index._encoder = encoder
        index._install(vectors, corpus, encoder.spec())
        return index

    @property
    def vectors(self) -> np.ndarray:
        """The document vectors in corpus order (memory-mapped after ``load``)."""
        self._check_built()
        if self._vectors is None:
            raise NotBuiltError(f"{type(self).__name__} does not keep the raw vectors")
        return self._vectors

    def _install(self, vectors: np.ndarray, corpus: Corpus, spec: dict[str, Any]) -> None:
        """Adopt ``vectors`` (one row per document of ``corpus``, made by ``spec``) and fit on them."""
        self._adopt_ids(corpus.ids)
        self._corpus_info = corpus.fingerprint()
        self._spec = spec
        self._vectors = vectors
        self._fit(vectors)

    def set_query_encoder(self, encoder: Encoder, *, trained_for_documents: bool = False) -> None:
        """Encode queries with ``encoder``: refused if its vectors are not comparable with the
        documents' (another model); another backend or precision is allowed and put in ``notes``.

        ``trained_for_documents``: ``encoder`` is a query encoder trained against exactly these
        document vectors (ADORE); it becomes the index's query encoder, recorded in its manifest,
        and later query encoders are checked against it instead of the documents' encoder.
        """
        if trained_for_documents:
            self._query_spec = encoder.spec()
            self.notes = [f"queries encoded by {encoder.spec().get('source')}, trained against these "
                          "document vectors (ADORE)"]
        else:
            reference = self._query_spec or self._spec
            self.notes = check_compatible(reference, encoder.spec())
            if self._query_spec:
                self.notes.insert(0, f"queries encoded by {self._query_spec.get('source')}, trained "
                                  "against these document vectors (ADORE)")
        self._encoder = encoder

    def encoder_spec(self) -> dict[str, Any]:
        """The spec of the encoder queries must be encoded with."""
        return dict(self._query_spec or self._spec)

    def encode_queries(self, queries: Queries) -> np.ndarray:
        """The query vectors, with progress output when there are enough queries to take a while."""
        self._check_built()
        texts = [queries[q] for q in queries]
        progress = self.progress and len(texts) >= QUERY_PROGRESS_FROM
        return self.get_encoder().encode_queries(texts, progress=progress)

    def search(self, queries: Queries, k: int = 100) -> Run:
        """Top-``k`` documents per query by inner product of normalised vectors."""
        qids = self._query_ids(queries, k)
        if not qids:
            return {}
        return self.search_vectors(qids, self.encode_queries(queries), k)

    def search_vectors(self, qids: list[str], vectors: np.ndarray, k: int) -> Run:
        """Search with query vectors that were encoded elsewhere (same encoder spec)."""
        self._check_built()
        assert self._doc_ids is not None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        fb = self.feedback
        if fb is not None and fb.active:
            rows, _ = self._search_vectors(vectors, min(fb.fb_docs, len(self)))
            vectors = rocchio_method.expand(vectors, self._doc_vectors(rows), fb)
        idx, val = self._search_vectors(vectors, min(k, len(self)))
        run: Run = {}
        for row, qid in enumerate(qids):
            ok = (idx[row] >= 0) & np.isfinite(val[row])
            run[qid] = dict(zip(self._doc_ids[idx[row][ok]].tolist(), val[row][ok].astype(float).tolist()))
        return run

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        self._check_built()
        assert self._doc_ids is not None
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            if self.stores_vectors:
                assert self._vectors is not None
                np.save(tmp / "vectors.npy", np.asarray(self._vectors, dtype=self.dtype))
            with open(tmp / "doc_ids.json", "w", encoding="utf-8") as handle:
                json.dump(self._doc_ids.tolist(), handle, ensure_ascii=False)
            self._save_extra(tmp)
            self._save_deleted(tmp)
            spec = self._spec
            if self.embed_encoder:
                source = Path(str(spec.get("source")))
                if not source.is_dir():
                    raise ConfigError(f"cannot embed the encoder: {source} is not a local model folder "
                                      "(a hub id loads from the hub anyway); leave embed_encoder off")
                shutil.copytree(source, tmp / EMBEDDED_MODEL)
                spec = {**spec, "source": EMBEDDED_MODEL, "model": EMBEDDED_MODEL}
            write_manifest(
                tmp, kind=self.kind, format_version=self._saved_format(),
                params={**self.params(), "encoder": spec,
                        **({"query_encoder": self._query_spec} if self._query_spec else {})},
                provenance={"corpus": self._corpus_info, "documents": len(self)},
                libraries=("torch", "transformers", "sentence-transformers", "faiss-cpu"),
            )
        return path

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True, verify: bool = True,
             encoder: Encoder | None = None) -> DenseIndexBase:
        """Load an index folder; vectors are memory-mapped unless ``mmap=False``.

        The query encoder is rebuilt from the manifest's spec, with backend and precision resolved
        for this machine, or ``encoder`` is used if given. An encoder of another model (other
        weights, prompts, pooling, max length...) is refused; another backend or precision of the
        same model is allowed and reported in ``notes``.
        """
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION, verify=verify)
        params = dict(manifest["params"])
        spec = params.pop("encoder")
        query_spec = params.pop("query_encoder", None)
        embedded = params.pop("embedded_encoder", False)
        if embedded:  # the model folder inside the index, wherever the index now lies
            spec = {**spec, "source": str(path / spec["source"]), "model": str(path / spec["source"])}
        index = cls._from_params(params)
        index.embed_encoder = embedded
        index._spec = spec
        index._query_spec = query_spec
        index.set_query_encoder(encoder if encoder is not None else encoder_from_spec(query_spec or spec))
        if cls.stores_vectors:
            index._vectors = np.load(path / "vectors.npy", mmap_mode="r" if mmap else None)
        index._doc_ids = np.asarray(json.loads((path / "doc_ids.json").read_text("utf-8")), dtype=object)
        index._corpus_info = manifest["provenance"].get("corpus", {})
        index._load_extra(path, params)
        index._load_deleted(path)
        return index

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> DenseIndexBase:
        return cls(dtype=params["dtype"], batch_size=params["batch_size"],
                   feedback=feedback_from_dict(params.get("feedback")))


class FlatIndex(DenseIndexBase):
    """Exact inner-product search; bounded memory through chunked products over mmapped vectors."""

    kind: ClassVar[str] = "index.dense.flat"

    def __init__(self, encoder: str | Encoder = "minilm", *, chunk_rows: int = 65_536, **kwargs: Any) -> None:
        super().__init__(encoder, **kwargs)
        self.chunk_rows = chunk_rows

    def params(self) -> dict[str, Any]:
        # the chunk size changes the BLAS kernel and so the last bits of a score: recorded
        return {**super().params(), "chunk_rows": self.chunk_rows}

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> FlatIndex:
        return cls(dtype=params["dtype"], batch_size=params["batch_size"], chunk_rows=params["chunk_rows"],
                   feedback=feedback_from_dict(params.get("feedback")))

    def _fit(self, vectors: np.ndarray) -> None:
        """Nothing to train: exact search reads the vectors directly."""

    def _search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._vectors is not None
        return exact_search(queries, self._vectors, k, self.chunk_rows, self._excluded())

    def _add_vectors(self, vectors: np.ndarray) -> None:
        assert self._vectors is not None
        self._vectors = np.concatenate([np.asarray(self._vectors), vectors])

    def _compact(self, keep: np.ndarray) -> None:
        assert self._vectors is not None
        self._vectors = np.asarray(self._vectors)[keep]
        self._doc_ids = self._doc_ids[keep]
