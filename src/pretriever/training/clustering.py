"""k-means over embeddings, and the topic-aware order of a set of examples it gives.

TAS-B's query clusters (``tasb``) and the lexical pre-training task's topic batches both group
examples by the k-means cluster of their vectors, so that a batch's in-batch negatives are on one
topic (Hofstätter et al. 2021).
"""

from __future__ import annotations

import numpy as np


def kmeans(vectors: np.ndarray, k: int, seed: int, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding: (labels, centroids). Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    k = max(1, min(k, n))
    norms = (vectors**2).sum(-1)

    def distances(centers: np.ndarray) -> np.ndarray:  # [n, k] squared, without an [n, k, d] tensor
        return np.maximum(norms[:, None] - 2 * vectors @ centers.T + (centers**2).sum(-1)[None], 0)

    centroids = [vectors[rng.integers(n)]]
    nearest = distances(np.asarray(centroids))[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        centroids.append(vectors[rng.choice(n, p=nearest / total) if total > 0 else rng.integers(n)])
        nearest = np.minimum(nearest, distances(centroids[-1][None])[:, 0])
    centers = np.asarray(centroids, dtype=np.float64)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmin(distances(centers), axis=1)
        for c in range(k):
            members = vectors[labels == c]
            if len(members):
                centers[c] = members.mean(axis=0)
    return labels, centers


def topic_order(vectors: np.ndarray, group: int, rng: np.random.Generator) -> np.ndarray:
    """An order of the rows of ``vectors`` in which runs of about ``group`` rows share a topic:
    k-means into len / group clusters, the clusters in random order, each one's members shuffled.
    Cut into batches of ``group``, most batches then hold one cluster (TAS's topic-aware sampling
    for data without queries or qrels)."""
    labels, _ = kmeans(np.asarray(vectors, dtype=np.float64), len(vectors) // group, int(rng.integers(2**31)))
    clusters = rng.permutation(int(labels.max()) + 1)
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in clusters])
