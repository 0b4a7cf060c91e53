"""Approximate nearest-neighbour search with FAISS (Johnson et al. 2019, "Billion-scale similarity
search with GPUs"): flat inner product, HNSW (Malkov & Yashunin 2018) and IVF-PQ (Jégou et al.
2011), behind the ``faiss`` extra.

Defaults are chosen for recall, not for the smallest index: HNSW with M=32, efConstruction=200 and
efSearch = max(128, k) keeps >= 0.99 of exact Recall@100 on SciFact (tested).
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

    def _search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        # per-call search parameters: no shared state is mutated, so concurrent searches are safe
        params = None
        if self.index_type == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        elif self.index_type == "ivfpq":
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        scores, ids = self._faiss_index.search(queries, k, params=params)
        return ids.astype(np.int64), scores

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
