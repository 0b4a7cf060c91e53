"""Late-interaction indexes: one vector per document token, scored by MaxSim (Khattab & Zaharia
2020, "ColBERT").

``MaxSimIndex`` is the exact reference: every query token against every stored document token,
in blocks that bound memory, over token vectors memory-mapped from the folder (float16 by
default: half the bytes, and MaxSim moved by less than 1e-3). ``LateInteractionIndex`` holds what
it shares with the compressed ``PlaidIndex``: resumable corpus encoding, the query encoder and its
compatibility check, reranking a candidate run by MaxSim (``score``), and the folder with its
manifest.

Documents added after the build are encoded by the index's encoder and appended (``MaxSimIndex``:
exactly what a rebuild would score); deleted ones are tombstoned (``indexes/updates.py``).
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
from pretriever.encoders.colbert import IDENTITY_KEYS, ColBERTEncoder, colbert_from_spec
from pretriever.encoders.dense import check_compatible
from pretriever.errors import ConfigError
from pretriever.indexes.base import DocumentTable
from pretriever.indexes.dense import top_k
from pretriever.indexes.updates import Payload, Updatable
from pretriever.types import Queries, Run

FORMAT_VERSION = 2  # 2: may hold deleted.npy (tombstones); written only then
SCORE_CELLS = 1 << 24  # query-token x document-token scores held at once: 64 MiB of float32
RESULT_CELLS = 1 << 25  # query x document MaxSim scores held at once by exact search
BLOCK_TOKENS = 1 << 16  # document tokens converted to float32 at once: 96 MiB at 384 dimensions


def spans(offsets: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``items`` (item ``i`` owns ``offsets[i]:offsets[i+1]``) one after the other, and
    where each item's rows start among them: what a gather then a ``reduceat`` per item reads."""
    starts, ends = offsets[items], offsets[items + 1]
    lengths = ends - starts
    bounds = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.repeat(starts - bounds, lengths) + np.arange(int(lengths.sum())), bounds


def maxsim_matrix(queries: list[np.ndarray], tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MaxSim of every query against every document: (queries, documents) float32.

    Document ``d`` owns rows ``offsets[d]:offsets[d+1]`` of ``tokens`` (at least one each). Documents
    are read in blocks of about ``SCORE_CELLS / query tokens`` tokens, so a memory-mapped matrix
    larger than RAM works.
    """
    n_docs = len(offsets) - 1
    q = np.concatenate(queries).astype(np.float32, copy=False)
    q_starts = np.concatenate([[0], np.cumsum([len(x) for x in queries])[:-1]]).astype(np.int64)
    out = np.empty((len(queries), n_docs), dtype=np.float32)
    budget = max(1, min(BLOCK_TOKENS, SCORE_CELLS // max(1, len(q))))
    first = 0
    while first < n_docs:
        last = int(np.searchsorted(offsets, offsets[first] + budget, side="right")) - 1
        last = min(max(last, first + 1), n_docs)
        block = np.asarray(tokens[offsets[first] : offsets[last]], dtype=np.float32)
        sims = q @ block.T
        best = np.maximum.reduceat(sims, offsets[first:last] - offsets[first], axis=1)
        out[:, first:last] = np.add.reduceat(best, q_starts, axis=0)
        first = last
    return out


class LateInteractionIndex(Updatable, DocumentTable):
    """What every late-interaction index shares; subclasses implement ``_fit(tokens, offsets)``,
    ``_search_encoded(queries, k)``, ``doc_vectors(positions)`` and their files."""

    kind: ClassVar[str] = "index.late-interaction"

    def __init__(
        self,
        encoder: str | ColBERTEncoder = "minilm",
        *,
        batch_size: int = 32,
        dtype: str = "float16",
        work_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.dtype = dtype
        self.work_dir = work_dir
        self.progress = progress
        self._encoder: ColBERTEncoder | None = None
        self._doc_ids: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._spec: dict[str, Any] = {}
        self._corpus_info: dict[str, Any] = {}
        self.notes: list[str] = []

    # -- subclass hooks --------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "batch_size": self.batch_size}

    def _fit(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        raise NotImplementedError

    def _search_encoded(self, queries: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def doc_vectors(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token vectors (float32) of the documents at ``positions`` and their offsets."""
        raise NotImplementedError

    def _save_extra(self, folder: Path) -> None:
        raise NotImplementedError

    def _load_extra(self, folder: Path, params: dict[str, Any], mmap: bool) -> None:
        raise NotImplementedError

    def _add_tokens(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        """Index the token vectors of appended documents; ``offsets`` already covers them."""
        raise NotImplementedError

    def _compact_tokens(self, rows: np.ndarray, offsets: np.ndarray) -> None:
        """Keep only token ``rows`` (those of the kept documents); ``offsets`` is already theirs."""
        raise NotImplementedError

    # -- updates ---------------------------------------------------------------------------------
    def prepare_add(self, corpus: Corpus) -> Payload:
        """The documents' token vectors, encoded as the build encodes them, and their counts."""
        docs = self.get_encoder().encode_documents(corpus.contents())
        return {"tokens": np.concatenate(docs).astype(self.dtype),
                "lengths": np.array([len(d) for d in docs], dtype=np.int64)}

    def apply_add(self, ids: list[str], payload: Payload) -> None:
        assert self._offsets is not None
        tokens, lengths = np.asarray(payload["tokens"]), np.asarray(payload["lengths"], dtype=np.int64)
        if len(lengths) != len(ids) or int(lengths.sum()) != len(tokens) or (lengths < 1).any():
            raise ConfigError(f"token vectors of {len(lengths)} documents given for {len(ids)}")
        offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)]).astype(np.int64)
        self._add_tokens(tokens.astype(self.dtype, copy=False), offsets)
        self._offsets = offsets
        self._append_ids(ids)

    def _compact(self, keep: np.ndarray) -> None:
        assert self._offsets is not None
        rows, _ = spans(self._offsets, keep)
        offsets = np.concatenate([[0], np.cumsum(np.diff(self._offsets)[keep])]).astype(np.int64)
        self._compact_tokens(rows, offsets)
        self._offsets = offsets
        self._doc_ids = self._doc_ids[keep]

    # -- building --------------------------------------------------------------------------------
    def get_encoder(self) -> ColBERTEncoder:
        if self._encoder is None:
            enc = self.encoder
            self._encoder = (
                ColBERTEncoder(enc, batch_size=self.batch_size) if isinstance(enc, (str, Path)) else enc
            )
        return self._encoder

    @property
    def tokens_count(self) -> int:
        """Token vectors stored (over every document)."""
        return 0 if self._offsets is None else int(self._offsets[-1])

    def build(self, corpus: Corpus) -> LateInteractionIndex:
        """Encode the corpus's token vectors (resumably, in ``work_dir`` if given) and index them."""
        from pretriever.encoding import assemble_tokens, encode_shard

        if not isinstance(corpus, Corpus):
            corpus = Corpus.from_documents(corpus)
        if len(corpus) == 0:
            raise ConfigError(f"cannot build a {type(self).__name__} over an empty corpus")
        encoder = self.get_encoder()
        keep = self.work_dir is not None
        work = Path(self.work_dir) if keep else Path(tempfile.mkdtemp(prefix="pretriever-encode-"))
        try:
            encode_shard(
                encoder, corpus, work, batch_size=self.batch_size, dtype=self.dtype, progress=self.progress
            )
            _, offsets = assemble_tokens(work, work / "tokens.npy")
            tokens = np.load(work / "tokens.npy", mmap_mode="r")
            self.install(tokens, offsets, corpus, encoder)
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
        return self

    def install(
        self, tokens: np.ndarray, offsets: np.ndarray, corpus: Corpus, encoder: ColBERTEncoder
    ) -> LateInteractionIndex:
        """Index token vectors already encoded by ``encoder`` (document ``i`` owns rows
        ``offsets[i]:offsets[i+1]``): e.g. build the exact and the compressed index from one encoding."""
        if len(offsets) != len(corpus) + 1:
            raise ConfigError(
                f"{len(offsets) - 1} documents' token vectors given for {len(corpus)} documents"
            )
        self._encoder = encoder
        self._adopt_ids(corpus.ids)
        self._corpus_info = corpus.fingerprint()
        self._spec = encoder.spec()
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._fit(tokens, self._offsets)
        return self

    # -- searching -------------------------------------------------------------------------------
    def set_query_encoder(self, encoder: ColBERTEncoder) -> None:
        """Encode queries with ``encoder``: refused if it is another model; another backend or
        precision of the same model is allowed and put in ``notes``."""
        self.notes = check_compatible(self._spec, encoder.spec(), IDENTITY_KEYS)
        self._encoder = encoder

    def encoder_spec(self) -> dict[str, Any]:
        return dict(self._spec)

    def encode_queries(self, queries: Queries) -> list[np.ndarray]:
        from pretriever.indexes.dense import QUERY_PROGRESS_FROM

        texts = [queries[q] for q in queries]
        return self.get_encoder().encode_queries(
            texts, progress=self.progress and len(texts) >= QUERY_PROGRESS_FROM
        )

    def search(self, queries: Queries, k: int = 100) -> Run:
        """Top-``k`` documents per query by MaxSim."""
        qids = self._query_ids(queries, k)
        if not qids:
            return {}
        return self.search_encoded(qids, self.encode_queries(queries), k)

    def search_encoded(self, qids: list[str], vectors: list[np.ndarray], k: int) -> Run:
        """Search with query token vectors encoded elsewhere (same encoder spec)."""
        self._check_built()
        assert self._doc_ids is not None
        run: Run = {}
        for qid, (idx, val) in zip(qids, self._search_encoded(vectors, min(k, len(self)))):
            ok = np.isfinite(val)  # tombstoned documents score -inf
            run[qid] = dict(zip(self._doc_ids[idx[ok]].tolist(), val[ok].astype(float).tolist()))
        return run

    # -- a rerank stage (the same calls as a cross-encoder ``Reranker``) -------------------------
    reads_texts: ClassVar[bool] = False  # MaxSim reads the stored token vectors, not the texts
    interpolation: ClassVar[float] = 1.0

    def score_run(
        self,
        run: Run,
        queries: Queries,
        documents: Any = None,
        *,
        depth: int | None = None,
        progress: bool = False,
    ) -> Run:
        """MaxSim of each query's top-``depth`` documents of ``run`` (all when None): a late
        interaction rerank stage over any first stage. ``documents`` is not read (the vectors are
        stored); documents not in this index are dropped, with a note."""
        from pretriever.runs import ranked_items

        self._check_built()
        assert self._doc_ids is not None
        position = self.positions()
        missing = [q for q in run if q not in queries]
        if missing:
            raise ConfigError(
                f"the run has query '{missing[0]}', which is not among the given queries; "
                "use the queries of the split the run was made on"
            )
        qids = [q for q in run if run[q]]
        vectors = (
            self.get_encoder().encode_queries([queries[q] for q in qids], progress=progress) if qids else []
        )
        out: Run = {q: {} for q in run}
        unknown = 0
        for qid, qv in zip(qids, vectors):
            docs = [d for d, _ in ranked_items(run[qid], depth)]
            known = [d for d in docs if d in position]
            unknown += len(docs) - len(known)
            if known:
                tokens, offsets = self.doc_vectors(np.array([position[d] for d in known], dtype=np.int64))
                out[qid] = dict(zip(known, maxsim_matrix([qv], tokens, offsets)[0].astype(float).tolist()))
        if unknown:
            self.notes = [
                *self.notes,
                f"{unknown} candidates are not in the late-interaction index "
                "(built from another corpus?) and were dropped",
            ]
        return out

    def rerank(
        self,
        run: Run,
        queries: Queries,
        documents: Any = None,
        *,
        depth: int = 100,
        interpolation: float | None = None,
        progress: bool = False,
    ) -> Run:
        """Reorder each query's top-``depth`` by MaxSim (``rerank_scores``: the set never changes)."""
        from pretriever.encoders.cross import rerank_scores

        scores = self.score_run(run, queries, depth=depth, progress=progress)
        return rerank_scores(run, scores, interpolation=1.0 if interpolation is None else interpolation)

    def describe_mix(self, depth: int) -> str:
        return "MaxSim scores alone"

    @property
    def resolved(self) -> tuple[str, str]:
        return self.get_encoder().resolved

    def spec(self) -> dict[str, Any]:
        """What a pipeline records about this index as its rerank stage."""
        return {
            "kind": self.kind,
            "encoder": self._spec,
            "backend": self.resolved[0],
            "precision": self.resolved[1],
        }

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        self._check_built()
        assert self._doc_ids is not None and self._offsets is not None
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            np.save(tmp / "offsets.npy", self._offsets)
            with open(tmp / "doc_ids.json", "w", encoding="utf-8") as handle:
                json.dump(self._doc_ids.tolist(), handle, ensure_ascii=False)
            self._save_extra(tmp)
            self._save_deleted(tmp)
            write_manifest(
                tmp,
                kind=self.kind,
                format_version=self._saved_format(),
                params={**self.params(), "encoder": self._spec},
                provenance={
                    "corpus": self._corpus_info,
                    "documents": len(self),
                    "tokens": int(self._offsets[-1]),
                },
                libraries=("torch", "transformers", "faiss-cpu"),
            )
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        mmap: bool = True,
        verify: bool = True,
        encoder: ColBERTEncoder | None = None,
    ) -> LateInteractionIndex:
        """Load an index folder (arrays memory-mapped unless ``mmap=False``); the query encoder is
        rebuilt from the manifest's spec, or ``encoder`` is used (checked against it)."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION, verify=verify)
        params = dict(manifest["params"])
        spec = params.pop("encoder")
        index = cls(
            dtype=params["dtype"],
            batch_size=params["batch_size"],
            **{k: params[k] for k in cls._extra_params() if k in params},
        )
        index._spec = spec
        index.set_query_encoder(encoder if encoder is not None else colbert_from_spec(spec))
        index._doc_ids = np.asarray(json.loads((path / "doc_ids.json").read_text("utf-8")), dtype=object)
        index._offsets = np.load(path / "offsets.npy")
        index._corpus_info = manifest["provenance"].get("corpus", {})
        index._load_extra(path, params, mmap)
        index._load_deleted(path)
        return index

    @classmethod
    def _extra_params(cls) -> tuple[str, ...]:
        return ()


class MaxSimIndex(LateInteractionIndex):
    """Exact MaxSim over every stored token vector: the reference the compressed index is measured
    against, and the right choice for small corpora."""

    kind: ClassVar[str] = "index.late-interaction.exact"

    def __init__(self, encoder: str | ColBERTEncoder = "minilm", **kwargs: Any) -> None:
        super().__init__(encoder, **kwargs)
        self._tokens: np.ndarray | None = None

    def _fit(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self._tokens = np.array(tokens, dtype=self.dtype)  # a copy in RAM: a build's work folder goes away

    def _search_encoded(self, queries: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        assert self._tokens is not None and self._offsets is not None
        n_docs = len(self._offsets) - 1
        step = max(1, RESULT_CELLS // n_docs)
        results = []
        for start in range(0, len(queries), step):
            scores = maxsim_matrix(queries[start : start + step], self._tokens, self._offsets)
            dead = self._excluded()
            if dead is not None:
                scores[:, dead] = -np.inf
            idx, val = top_k(scores, k)
            results.extend(zip(idx, val))
        return results

    def doc_vectors(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._tokens is not None and self._offsets is not None
        rows, bounds = spans(self._offsets, positions)
        return np.asarray(self._tokens[rows], dtype=np.float32), np.append(bounds, len(rows))

    def _add_tokens(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        assert self._tokens is not None
        self._tokens = np.concatenate([np.asarray(self._tokens), tokens])

    def _compact_tokens(self, rows: np.ndarray, offsets: np.ndarray) -> None:
        assert self._tokens is not None
        self._tokens = np.asarray(self._tokens)[rows]

    @property
    def tokens(self) -> np.ndarray:
        """Every document's token vectors, one after the other (memory-mapped after ``load``)."""
        self._check_built()
        assert self._tokens is not None
        return self._tokens

    def _save_extra(self, folder: Path) -> None:
        assert self._tokens is not None
        np.save(folder / "tokens.npy", self._tokens)

    def _load_extra(self, folder: Path, params: dict[str, Any], mmap: bool) -> None:
        self._tokens = np.load(folder / "tokens.npy", mmap_mode="r" if mmap else None)
