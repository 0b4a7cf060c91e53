"""Topic-aware sampling with balanced margins (Hofstätter et al. 2021, "Efficiently Teaching an
Effective Dense Retriever with Balanced Topic Aware Sampling", TAS-Balanced).

The training queries are clustered once (k-means on their embeddings by the starting model).
Each batch is drawn from a single cluster, so its in-batch negatives are on the same topic and
informative. For each query the hard negative is drawn "balanced": the (positive - negative)
score margins of its candidates (teacher scores when given, else first-stage scores) are split
into equal-width bins, a non-empty bin is picked uniformly, then a candidate in it; so easy and
hard pairs are seen in equal measure rather than as often as they occur.

A cluster with fewer queries than a batch is topped up with queries of the nearest clusters
(by centroid) and says so in ``Batches.mixed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pretriever.training.clustering import kmeans
from pretriever.training.negatives.static import Example, hard_pools, positives_of
from pretriever.types import Qrels, Run


@dataclass(frozen=True)
class Clusters:
    """Query id -> cluster, and the cluster centroids (for topping up small clusters)."""

    labels: dict[str, int]
    centroids: np.ndarray


def cluster_queries(query_ids: Sequence[str], vectors: np.ndarray, k: int, seed: int) -> Clusters:
    labels, centroids = kmeans(np.asarray(vectors, dtype=np.float64), k, seed)
    return Clusters({q: int(c) for q, c in zip(query_ids, labels)}, centroids)


def balanced_negative(candidates: Sequence[tuple[str, int]], margins: Sequence[float], bins: int,
                      rng: np.random.Generator) -> tuple[str, int]:
    """One candidate: a uniformly chosen non-empty margin bin, then uniformly within it."""
    values = np.asarray(margins, dtype=np.float64)
    low, high = values.min(), values.max()
    if high <= low or bins <= 1:
        return candidates[int(rng.integers(len(candidates)))]
    which = np.minimum(((values - low) / (high - low) * bins).astype(int), bins - 1)
    filled = sorted(set(which.tolist()))
    chosen = filled[int(rng.integers(len(filled)))]
    members = np.flatnonzero(which == chosen)
    return candidates[int(members[rng.integers(len(members))])]


@dataclass
class Batches:
    batches: list[list[Example]]
    mixed: int  # batches topped up from neighbouring clusters


def tasb_batches(run: Run, qrels: Qrels, clusters: Clusters, negatives, batch_size: int, *, epoch: int,
                 seed: int, scores: Run | None = None, bins: int = 10) -> Batches:
    """One epoch of TAS-Balanced batches, as many as there are (query, positive) pairs / batch size.

    ``negatives`` is a ``NegativeConfig`` (its ``hard`` pool; one negative per example);
    ``scores``: teacher scores for the margins (default: the first-stage run's).
    """
    rng = np.random.default_rng([seed, epoch, 17])
    positives = positives_of(qrels)
    pools = hard_pools(run, qrels, negatives)
    margin_source = scores or run
    usable = [q for q in positives if pools.get(q) and q in clusters.labels]
    by_cluster: dict[int, list[str]] = {}
    for q in usable:
        by_cluster.setdefault(clusters.labels[q], []).append(q)
    ranks = {q: {d: r for d, r in pools[q]} for q in usable}
    n_batches = sum(len(positives[q]) for q in usable) // batch_size
    sizes = np.array([len(by_cluster.get(c, [])) for c in range(len(clusters.centroids))], dtype=float)
    out: list[list[Example]] = []
    mixed = 0
    for _ in range(n_batches):
        cluster = int(rng.choice(len(sizes), p=sizes / sizes.sum()))
        members = list(by_cluster[cluster])
        chosen = [members[i] for i in rng.permutation(len(members))[:batch_size]]
        if len(chosen) < batch_size:  # top up from the nearest clusters
            mixed += 1
            distance = ((clusters.centroids - clusters.centroids[cluster]) ** 2).sum(-1)
            for other in np.argsort(distance, kind="stable")[1:]:
                extra = [q for q in by_cluster.get(int(other), []) if q not in chosen]
                extra = [extra[i] for i in rng.permutation(len(extra))]
                chosen.extend(extra[: batch_size - len(chosen)])
                if len(chosen) == batch_size:
                    break
        batch = []
        for q in chosen:
            positive = positives[q][int(rng.integers(len(positives[q])))]
            pool = pools[q]
            source = margin_source.get(q, {})
            top = source.get(positive, max((source.get(d, 0.0) for d, _ in pool), default=0.0))
            margins = [top - source.get(d, 0.0) for d, _ in pool]
            doc, rank = balanced_negative(pool, margins, bins, rng)
            batch.append(Example(q, positive, (doc,), ranks[q].get(positive), (rank,)))
        out.append(batch)
    return Batches(out, mixed)
