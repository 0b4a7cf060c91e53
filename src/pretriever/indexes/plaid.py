"""Compressed late-interaction index with centroid pruning (Santhanam et al. 2022, "ColBERTv2:
Effective and Efficient Retrieval via Lightweight Late Interaction" for the residual compression;
Santhanam et al. 2022, "PLAID: An Efficient Engine for Late Interaction Retrieval" for the search).

Build: spherical k-means (faiss) over a sample of the token vectors gives ``centroids``; every token
is stored as its nearest centroid's id plus its residual quantised to ``nbits`` per dimension
(bucket edges and values from the residuals' quantiles), so a 384-dim float16 token (768 bytes)
takes 2 + 96 bytes at 2 bits. Documents are listed under every centroid one of their tokens is in.

Search, per query, in PLAID's stages: score the query tokens against every centroid; the documents
listed under each token's ``nprobe`` best centroids are the candidates, first scored by the best
probed centroid they hold per query token; the best ``4 * ndocs`` of them are scored by centroid
interaction (MaxSim with every token replaced by its centroid: no decompression); the best
``ndocs`` by exact MaxSim over their decompressed tokens, computed as (centroid score + q . residual)
/ stored norm. With every centroid probed and ``ndocs`` >= the corpus, the result is exact MaxSim
over the decompressed vectors (a test holds it to that). The defaults (2 bits, nprobe 4, ndocs 64)
measured on 2 CPU cores (RESULTS.md): 20-26 ms a query; nDCG@10 -0.0031 against exact MaxSim on
SciFact and -0.0104 on NFCorpus (recall of the exact top-10: 0.90 and 0.79); as the fusion's third
member, where it rescores candidates, +0.0037 and -0.0002 against exact.

All arrays are ``.npy`` files memory-mapped on load; RAM holds the centroids and what a query reads.

Updates only approximate a rebuild: added documents' tokens are compressed with the centroids and
buckets of the build (a rebuild would train them on every document), and deleted documents are
tombstoned out of the candidates. ``compact()`` drops the deleted documents' tokens and keeps the
training; rebuild from the corpus when much of it has changed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._progress import Progress
from pretriever.encoders.colbert import ColBERTEncoder
from pretriever.errors import ConfigError, MissingDependencyError
from pretriever.indexes.dense import top_k
from pretriever.indexes.late_interaction import LateInteractionIndex, spans

NBITS = (1, 2, 4, 8)
ASSIGN_ROWS = 65_536  # tokens assigned to centroids at once
SHORTLIST = 4  # candidates kept by their probe score, per document then scored by centroid interaction
ARRAYS = ("centroids", "codes", "residuals", "norms", "doc_codes", "doc_code_offsets", "ivf", "ivf_offsets")


def default_centroids(tokens: int) -> int:
    """A power of two near 4 * sqrt(tokens) (PLAID uses 16 *; a quarter keeps k-means short on a
    CPU and measured the same recall), between 64 and 65,536 so codes fit in uint16."""
    return int(min(65_536, max(64, 2 ** round(math.log2(4 * math.sqrt(max(tokens, 1)))))))


def _byte_table(values: np.ndarray, nbits: int) -> np.ndarray:
    """(256, 8 / nbits) float32: the bucket values packed in each possible byte, high bits first."""
    per = 8 // nbits
    byte = np.arange(256)[:, None]
    shifts = nbits * np.arange(per - 1, -1, -1)[None, :]
    return values[(byte >> shifts) & ((1 << nbits) - 1)].astype(np.float32)


class PlaidIndex(LateInteractionIndex):
    """Centroids + quantised residuals, centroid-pruned candidates, exact MaxSim on the survivors.

    ``centroids``: number of k-means centroids (None: ``default_centroids``); ``nbits``: bits per
    residual dimension; ``nprobe``: centroids probed per query token; ``ndocs``: candidates
    decompressed and scored exactly per query (at least ``k``).
    """

    kind: ClassVar[str] = "index.late-interaction.plaid"

    def __init__(
        self,
        encoder: str | ColBERTEncoder = "minilm",
        *,
        centroids: int | None = None,
        nbits: int = 2,
        nprobe: int = 4,
        ndocs: int = 64,
        kmeans_iterations: int = 10,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(encoder, **kwargs)
        if nbits not in NBITS:
            raise ConfigError(f"nbits must be one of {', '.join(map(str, NBITS))}, got {nbits}")
        if nprobe < 1 or ndocs < 1:
            raise ConfigError(f"nprobe and ndocs must be at least 1, got nprobe={nprobe}, ndocs={ndocs}")
        if centroids is not None and not 1 <= centroids <= 65_536:
            raise ConfigError(f"centroids must be between 1 and 65,536, got {centroids}")
        self.centroids = centroids
        self.nbits = nbits
        self.nprobe = nprobe
        self.ndocs = ndocs
        self.kmeans_iterations = kmeans_iterations
        self.seed = seed
        self._arrays: dict[str, np.ndarray] = {}
        self._bucket_cutoffs = np.zeros(0, np.float32)
        self._bucket_values = np.zeros(0, np.float32)

    @property
    def n_centroids(self) -> int:
        """Centroids of the fitted index (``centroids``, or the default for its token count)."""
        return 0 if "centroids" not in self._arrays else int(self._arrays["centroids"].shape[0])

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "centroids": self.centroids,
            "nbits": self.nbits,
            "nprobe": self.nprobe,
            "ndocs": self.ndocs,
            "kmeans_iterations": self.kmeans_iterations,
            "seed": self.seed,
            "bucket_cutoffs": self._bucket_cutoffs.tolist(),
            "bucket_values": self._bucket_values.tolist(),
        }

    @classmethod
    def _extra_params(cls) -> tuple[str, ...]:
        return ("centroids", "nbits", "nprobe", "ndocs", "kmeans_iterations", "seed")

    # -- building --------------------------------------------------------------------------------
    def _fit(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        try:
            import faiss
        except ImportError:
            raise MissingDependencyError("faiss-cpu", extra="faiss", feature="the PLAID index") from None
        n, dim = tokens.shape
        k = min(self.centroids or default_centroids(n), n)
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, min(n, 64 * k), replace=False))
        kmeans = faiss.Kmeans(
            dim,
            k,
            niter=self.kmeans_iterations,
            seed=self.seed,
            spherical=True,
            max_points_per_centroid=64,
            verbose=False,
        )
        kmeans.train(np.ascontiguousarray(tokens[sample], dtype=np.float32))
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        search = faiss.IndexFlatIP(dim)
        search.add(centroids)
        self._arrays = {"centroids": centroids}
        # bucket edges and values from the residuals of the sample (ColBERTv2's quantiles)
        sample_vectors = np.asarray(tokens[sample[:65_536]], dtype=np.float32)
        _, nearest = search.search(sample_vectors, 1)
        values = (sample_vectors - centroids[nearest[:, 0]]).ravel()
        levels = 1 << self.nbits
        self._bucket_cutoffs = np.quantile(values, np.arange(1, levels) / levels).astype(np.float32)
        self._bucket_values = np.quantile(values, (np.arange(levels) + 0.5) / levels).astype(np.float32)
        codes, residuals, norms = self._compress(tokens, self.progress)
        self._arrays = {"centroids": centroids, "codes": codes, "residuals": residuals, "norms": norms,
                        **self._lists(codes, offsets)}

    def _compress(self, tokens: np.ndarray, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each token's nearest centroid, packed quantised residual and reconstructed norm."""
        import faiss

        centroids = self._arrays["centroids"]
        n, dim = tokens.shape
        search = faiss.IndexFlatIP(dim)
        search.add(centroids)
        codes = np.empty(n, dtype=np.uint16 if len(centroids) <= 65_536 else np.int32)
        residuals = np.empty((n, math.ceil(dim / (8 // self.nbits))), dtype=np.uint8)
        norms = np.empty(n, dtype=np.float32)
        with Progress(n, "compressing token vectors", "tokens", enabled=progress) as bar:
            for start in range(0, n, ASSIGN_ROWS):
                block = np.ascontiguousarray(tokens[start : start + ASSIGN_ROWS], dtype=np.float32)
                _, nearest = search.search(block, 1)
                codes[start : start + len(block)] = nearest[:, 0]
                packed = self._pack(block - centroids[nearest[:, 0]])
                residuals[start : start + len(block)] = packed
                norms[start : start + len(block)] = np.linalg.norm(
                    self._unnormalised(nearest[:, 0], packed), axis=1
                )
                bar.update(len(block))
        return codes, residuals, norms

    def _lists(self, codes: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
        """Each document's distinct centroids, and each centroid's documents (the inverted lists)."""
        k = len(self._arrays["centroids"])
        doc_of = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
        # (document, centroid) pairs, by document
        pairs = np.unique(doc_of * k + np.asarray(codes).astype(np.int64))
        doc_codes, pair_docs = (pairs % k).astype(codes.dtype), pairs // k
        by_centroid = np.lexsort((pair_docs, doc_codes))
        return {
            "doc_codes": doc_codes,
            "doc_code_offsets": np.searchsorted(pair_docs, np.arange(len(offsets))).astype(np.int64),
            "ivf": pair_docs[by_centroid].astype(np.int32),
            "ivf_offsets": np.searchsorted(doc_codes[by_centroid], np.arange(k + 1)).astype(np.int64),
        }

    # -- updates ---------------------------------------------------------------------------------
    exact_updates: ClassVar[bool] = False  # new tokens are compressed with the build's training

    def _add_tokens(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        codes, residuals, norms = self._compress(tokens)
        a = {name: np.asarray(value) for name, value in self._arrays.items()}
        a["codes"] = np.concatenate([a["codes"], codes])
        a["residuals"] = np.concatenate([a["residuals"], residuals])
        a["norms"] = np.concatenate([a["norms"], norms])
        self._arrays = {**a, **self._lists(a["codes"], offsets)}

    def _compact_tokens(self, rows: np.ndarray, offsets: np.ndarray) -> None:
        a = {name: np.asarray(value) for name, value in self._arrays.items()}
        for name in ("codes", "residuals", "norms"):
            a[name] = a[name][rows]
        self._arrays = {**a, **self._lists(a["codes"], offsets)}

    def _pack(self, residuals: np.ndarray) -> np.ndarray:
        """Quantise residuals to bucket ids and pack them, high bits first, ``8 / nbits`` a byte."""
        buckets = np.searchsorted(self._bucket_cutoffs, residuals).astype(np.uint8)
        per = 8 // self.nbits
        pad = (-buckets.shape[1]) % per
        if pad:
            buckets = np.pad(buckets, ((0, 0), (0, pad)))
        grouped = buckets.reshape(len(buckets), -1, per)
        shifts = (self.nbits * np.arange(per - 1, -1, -1)).astype(np.uint8)
        return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)

    # -- reading ---------------------------------------------------------------------------------
    def _unnormalised(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """Centroid + dequantised residual, float32, before normalisation."""
        centroids = self._arrays["centroids"]
        residual = _byte_table(self._bucket_values, self.nbits)[packed].reshape(len(packed), -1)
        return centroids[np.asarray(codes).astype(np.int64)] + residual[:, : centroids.shape[1]]

    def _decompress(self, rows: np.ndarray) -> np.ndarray:
        """Normalised float32 vectors of token ``rows``: centroid + dequantised residual."""
        a = self._arrays
        vectors = self._unnormalised(a["codes"][rows], np.asarray(a["residuals"][rows]))
        vectors /= np.asarray(a["norms"][rows], dtype=np.float32)[:, None]
        return vectors

    def doc_vectors(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._offsets is not None
        rows, bounds = spans(self._offsets, positions)
        return self._decompress(rows), np.append(bounds, len(rows))

    def _candidates(self, centroid_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Documents listed under any query token's ``nprobe`` best centroids, with a first score:
        the sum over query tokens of the best probed centroid the document has (0 where none)."""
        a = self._arrays
        n_tokens, k = centroid_scores.shape
        probe = min(self.nprobe, k)
        best = np.argpartition(-centroid_scores, probe - 1, axis=1)[:, :probe] if probe < k else \
            np.broadcast_to(np.arange(k), centroid_scores.shape)
        rows, bounds = spans(a["ivf_offsets"], best.ravel())
        lengths = np.diff(np.append(bounds, len(rows)))
        listed = np.asarray(a["ivf"][rows])
        token = np.repeat(np.repeat(np.arange(n_tokens), probe), lengths)
        value = np.repeat(np.take_along_axis(centroid_scores, best, axis=1).ravel(), lengths)
        dead = self._excluded()
        if dead is not None:  # tombstoned documents are no candidates
            live = ~dead[listed]
            listed, token, value = listed[live], token[live], value[live]
        docs, where = np.unique(listed, return_inverse=True)
        best_per_token = np.zeros((len(docs), n_tokens), dtype=np.float32)
        np.maximum.at(best_per_token, (where, token), value)
        return docs, best_per_token.sum(axis=1)

    def _approximate(self, centroid_scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """MaxSim of each candidate with its tokens replaced by their centroids (no decompression)."""
        a = self._arrays
        rows, bounds = spans(a["doc_code_offsets"], docs)
        by_centroid = np.ascontiguousarray(centroid_scores.T)  # a centroid's scores: one contiguous row
        sims = by_centroid[np.asarray(a["doc_codes"][rows]).astype(np.int64)]
        return np.maximum.reduceat(sims, bounds, axis=0).sum(axis=1)

    def _exact_scores(self, query: np.ndarray, centroid_scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` with the decompressed tokens of ``docs``, without building the vectors:
        q . (c + r) / |c + r| = (centroid score + q . r) / stored norm."""
        a = self._arrays
        rows, bounds = spans(self._offsets, docs)
        dim = query.shape[1]
        table = _byte_table(self._bucket_values, self.nbits)
        residual = table[np.asarray(a["residuals"][rows])].reshape(len(rows), -1)[:, :dim]
        sims = query @ residual.T
        sims += centroid_scores[:, np.asarray(a["codes"][rows]).astype(np.int64)]
        sims /= np.asarray(a["norms"][rows], dtype=np.float32)
        return np.maximum.reduceat(sims, bounds, axis=1).sum(axis=0)

    def _search_encoded(self, queries: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact scores for the best ``ndocs`` candidates by approximate score; any further results
        (k > ndocs) follow in approximate order, scored below every exactly scored one."""
        results = []
        centroids = self._arrays["centroids"]
        for query in queries:
            query = np.asarray(query, dtype=np.float32)
            centroid_scores = query @ centroids.T
            docs, first = self._candidates(centroid_scores)
            if not len(docs):  # every probed centroid empty
                results.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)))
                continue
            rest = np.zeros(0, dtype=np.int64)
            rest_scores = np.zeros(0, dtype=np.float32)
            wanted = max(self.ndocs, k)
            if len(docs) > SHORTLIST * wanted:  # PLAID's stages: probe scores, then centroid interaction
                keep, _ = top_k(first[None, :], SHORTLIST * wanted)
                docs = docs[keep[0]]
            if len(docs) > self.ndocs:
                approx = self._approximate(centroid_scores, docs)
                order, values = top_k(approx[None, :], min(len(docs), max(self.ndocs, k)))
                rest, rest_scores = docs[order[0, self.ndocs :]], values[0, self.ndocs :]
                docs = docs[order[0, : self.ndocs]]
            scores = self._exact_scores(query, centroid_scores, docs)
            idx, val = top_k(scores[None, :], min(k, len(docs)))
            found, found_scores = docs[idx[0]], val[0]
            if len(found) < k and len(rest):
                shift = float(found_scores.min()) - float(rest_scores.max()) - 1.0 if len(found) else 0.0
                found = np.concatenate([found, rest[: k - len(found)]])
                found_scores = np.concatenate([found_scores, rest_scores[: k - len(found_scores)] + shift])
            results.append((found, found_scores.astype(np.float32)))
        return results

    # -- files -----------------------------------------------------------------------------------
    def _save_extra(self, folder: Path) -> None:
        for name in ARRAYS:
            np.save(folder / f"{name}.npy", self._arrays[name])

    def _load_extra(self, folder: Path, params: dict[str, Any], mmap: bool) -> None:
        self._bucket_cutoffs = np.asarray(params["bucket_cutoffs"], dtype=np.float32)
        self._bucket_values = np.asarray(params["bucket_values"], dtype=np.float32)
        self._arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None) for name in ARRAYS
        }
        self._arrays["centroids"] = np.asarray(self._arrays["centroids"])  # read by every query

    def decompressed(self) -> tuple[np.ndarray, np.ndarray]:
        """Every document's decompressed token vectors and offsets (what exact MaxSim over this
        index's own vectors reads: the reference for its pruning)."""
        self._check_built()
        assert self._offsets is not None
        return self._decompress(np.arange(int(self._offsets[-1]))), self._offsets
