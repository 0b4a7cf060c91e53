"""Approximate nearest-neighbour search with FAISS (Johnson et al. 2019, "Billion-scale similarity
search with GPUs"): flat inner product, HNSW (Malkov & Yashunin 2018) and IVF-PQ (Jégou et al.
2011), behind the ``faiss`` extra.

Defaults are chosen for recall, not for the smallest index: HNSW with M=32, efConstruction=200 and
efSearch = max(128, k) keeps >= 0.99 of exact Recall@100 on SciFact (tested).

Updates: added vectors go into the FAISS index as they come; deleted rows are tombstoned and
filtered inside FAISS's search by an ID selector, so deleted documents never come back.
"flat" then returns what a rebuild would. HNSW and IVF-PQ only approximate a rebuild: an HNSW
graph grown by insertions (deleted nodes still route searches) differs from one built at once,
and IVF-PQ quantises new vectors with the centroids and codebooks trained at the build.
``compact()`` drops the deleted rows and, for HNSW, builds the graph afresh over the kept vectors;
IVF-PQ keeps its tombstones and its training (its raw vectors are gone): rebuild it from the corpus.
A filtered HNSW or IVF search can return fewer than k documents when many are deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever.encoders.base import Encoder
from pretriever.errors import ConfigError, MissingDependencyError
from pretriever.feedback import feedback_from_dict
from pretriever.indexes.dense import DenseIndexBase

FAISS_TYPES = ("flat", "hnsw", "ivfpq")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", extra="faiss", feature="ANN indexes") from None
    return faiss


class FaissIndex(DenseIndexBase):
    """A FAISS index over the encoder's vectors (inner product; vectors are normalised for cosine).

    ``index_type``: "flat" (exact), "hnsw" (graph; ``m``, ``ef_construction``, ``ef_search``) or
    "ivfpq" (``nlist`` clusters, ``pq_m`` sub-quantisers of 8 bits, ``nprobe`` probed at search).
    """

    kind: ClassVar[str] = "index.dense.faiss"
    stores_vectors: ClassVar[bool] = False  # FAISS keeps its own (possibly compressed) copy

    def __init__(
        self,
        encoder: str | Encoder = "minilm",
        *,
        index_type: str = "hnsw",
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        nlist: int | None = None,
        pq_m: int = 48,
        nprobe: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(encoder, **kwargs)
        self.index_type = index_type
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.pq_m = pq_m
        self.nprobe = nprobe
        self._faiss_index: Any = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "index_type": self.index_type, "m": self.m,
                "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                "nlist": self.nlist, "pq_m": self.pq_m, "nprobe": self.nprobe}

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> FaissIndex:
        keys = ("index_type", "m", "ef_construction", "ef_search", "nlist", "pq_m", "nprobe",
                "dtype", "batch_size")
        return cls(**{k: params[k] for k in keys}, feedback=feedback_from_dict(params.get("feedback")))

    def _make(self, dim: int, n: int) -> Any:
        faiss = _faiss()
        if self.index_type not in FAISS_TYPES:
            raise ConfigError(
                f"unknown FAISS index type '{self.index_type}'; choose {', '.join(FAISS_TYPES)}")
        if self.index_type == "flat":
            return faiss.IndexFlatIP(dim)
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            return index
        nlist = self.nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        if dim % self.pq_m:
            raise ConfigError(f"pq_m={self.pq_m} must divide the vector size {dim}")
        quantizer = faiss.IndexFlatIP(dim)
        return faiss.IndexIVFPQ(quantizer, dim, nlist, self.pq_m, 8, faiss.METRIC_INNER_PRODUCT)

    def _fit(self, vectors: np.ndarray) -> None:
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        index = self._make(data.shape[1], data.shape[0])
        if not index.is_trained:
            if data.shape[0] < 256:
                raise ConfigError("IVF-PQ needs at least 256 vectors to train; use hnsw or flat")
            index.train(data)
        index.add(data)
        self._faiss_index = index
        self._vectors = None  # FAISS holds them now
        self._direct_map = False
        self._prepare_feedback()

    @property
    def exact_updates(self) -> bool:  # type: ignore[override]
        return self.index_type == "flat"

    def _search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        # per-call search parameters: no shared state is mutated, so concurrent searches are safe
        selector = self._selector()
        if self.index_type == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        elif self.index_type == "ivfpq":
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        scores, ids = self._faiss_index.search(queries, k, params=params)
        return ids.astype(np.int64), scores

    def _selector(self) -> Any:
        """FAISS's filter of the live rows (None when nothing is deleted); built once per change."""
        dead = self._excluded()
        if dead is None:
            return None
        if getattr(self, "_live_selector", None) is None:
            faiss = _faiss()
            self._dead_rows = np.flatnonzero(dead).astype(np.int64)  # referenced by the selector
            self._dead_batch = faiss.IDSelectorBatch(len(self._dead_rows), faiss.swig_ptr(self._dead_rows))
            self._live_selector = faiss.IDSelectorNot(self._dead_batch)
        return self._live_selector

    def _changed(self) -> None:
        super()._changed()
        self._live_selector = None

    def _dimension(self) -> int:
        return int(self._faiss_index.d)

    def copy_for_update(self) -> None:
        return None  # FAISS adds into its own structures: updated in place, searches paused

    def _add_vectors(self, vectors: np.ndarray) -> None:
        self._faiss_index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._direct_map = False
        self._prepare_feedback()

    def _prepare_feedback(self) -> None:
        """IVF-PQ with feedback reads stored vectors through a direct map: built with the index,
        never during a search (a search must not change the FAISS index others are reading)."""
        if self.feedback is not None and self.index_type == "ivfpq":
            self._doc_vectors(np.zeros(1, dtype=np.int64))

    def compact(self) -> FaissIndex:
        """Flat and HNSW: the kept vectors indexed afresh (HNSW: a new graph, as a rebuild makes).
        IVF-PQ keeps its tombstones: only its codes are stored, and decoding and re-adding them
        would move the kept documents' scores; rebuild it from the corpus to drop them."""
        if self.index_type == "ivfpq":
            self._check_built()
            return self
        return super().compact()

    def _compact(self, keep: np.ndarray) -> None:
        self._fit(self._doc_vectors(keep.astype(np.int64)))
        self._direct_map = False
        self._doc_ids = self._doc_ids[keep]

    def _doc_vectors(self, rows: np.ndarray) -> np.ndarray:
        """FAISS's stored copy of the vectors (decoded: approximate for IVF-PQ)."""
        if self.index_type == "ivfpq" and not getattr(self, "_direct_map", False):
            _faiss().extract_index_ivf(self._faiss_index).make_direct_map()
            self._direct_map = True
        flat = rows.ravel()
        out = self._faiss_index.reconstruct_batch(np.maximum(flat, 0).astype(np.int64))
        out[flat < 0] = np.nan
        return out.reshape(*rows.shape, -1)

    def _save_extra(self, folder: Path) -> None:
        _faiss().write_index(self._faiss_index, str(folder / "faiss.index"))

    def _load_extra(self, folder: Path, params: dict[str, Any]) -> None:
        self._faiss_index = _faiss().read_index(str(folder / "faiss.index"))
        self._direct_map = False
        self._prepare_feedback()
