"""InfoNCE with in-batch and hard negatives (van den Oord et al. 2018; Karpukhin et al. 2020, DPR;
sentence-transformers' MultipleNegativesRankingLoss).

Each query is scored against every document in the batch: its own positive, the other queries'
positives and every hard negative; softmax cross-entropy picks its positive. With cosine
similarity the scores are scaled by 1 / temperature (20 = ST's default scale).
"""

from __future__ import annotations

from typing import Any


def infonce(queries: Any, documents: Any, temperature: float = 0.05, weights: Any = None,
            group: int | None = None, offset: int = 0, exclude: Any = None) -> Any:
    """``queries`` [B, d]; ``documents`` [G * group, d] laid out as groups of (positive, n
    negatives), query i's positive at row ``offset + i * group`` (``group`` defaults to
    len(documents) / B; ``offset`` places this process's groups among documents gathered from
    several). ``exclude`` [B, G * group] (bool) drops documents from a query's softmax: other
    queries' documents that are judged relevant to it are not negatives. Mean (weighted)
    cross-entropy."""
    loss = per_sample(queries, documents, temperature, group, offset, exclude)
    if weights is not None:
        loss = loss * weights
    return loss.mean()


def per_sample(queries: Any, documents: Any, temperature: float = 0.05, group: int | None = None,
               offset: int = 0, exclude: Any = None) -> Any:
    """The unreduced InfoNCE loss of each query (for loss-based sample reweighting)."""
    import torch
    import torch.nn.functional as F

    batch = queries.shape[0]
    group = group or documents.shape[0] // batch
    scores = queries.float() @ documents.float().T / temperature
    target = offset + torch.arange(batch, device=scores.device) * group
    if exclude is not None:
        exclude = exclude.to(scores.device).clone()
        exclude[torch.arange(batch, device=scores.device), target] = False  # never the own positive
        scores = scores.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(scores, target, reduction="none")
