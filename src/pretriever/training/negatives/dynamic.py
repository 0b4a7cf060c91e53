"""Dynamic hard negatives against a fixed document index (Zhan et al. 2021, "Optimizing Dense
Retrieval Model Training with Hard Negatives", ADORE).

The document vectors are computed once and never change; only the query encoder trains. Every
``every`` steps the training queries are encoded by the current query encoder and searched in the
fixed index, and each query's negatives become the top-ranked documents that are not judged
relevant: the documents the model currently ranks highest by mistake, which is what a
retriever is evaluated on. No document passes through the model during training, so steps are
cheap; the price is that the trained query encoder belongs to this document index (the saved
index records it as its query encoder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pretriever.types import Qrels


class DynamicNegatives:
    """Each training query's current top-ranked non-relevant documents in a fixed index."""

    def __init__(self, index, qrels: Qrels, depth: int = 200) -> None:  # index: a built dense index
        self.index = index
        self.relevant = {q: {d for d, g in docs.items() if g > 0} for q, docs in qrels.items()}
        self.depth = depth
        self.pools: dict[str, list[str]] = {}
        self.refreshed_at: list[int] = []

    def refresh(self, query_ids: Sequence[str], encode: Callable[[list[str]], np.ndarray], step: int) -> None:
        """Re-mine with the current query encoder (``encode``: query ids -> vectors)."""
        vectors = encode(list(query_ids))
        run = self.index.search_vectors(list(query_ids), vectors, self.depth)
        self.pools = {
            q: [d for d, _ in sorted(run.get(q, {}).items(), key=lambda i: (-i[1], i[0]))
                if d not in self.relevant.get(q, set())]
            for q in query_ids
        }
        self.refreshed_at.append(step)

    def negatives(self, query_id: str, n: int) -> list[str]:
        """The ``n`` highest-ranked non-relevant documents of the last refresh."""
        return self.pools.get(query_id, [])[:n]
