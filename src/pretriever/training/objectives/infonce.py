"""InfoNCE with in-batch and hard negatives (van den Oord et al. 2018; Karpukhin et al. 2020, DPR;
sentence-transformers' MultipleNegativesRankingLoss).

Each query is scored against every document in the batch: its own positive, the other queries'
positives and every hard negative; softmax cross-entropy picks its positive. With cosine
similarity the scores are scaled by 1 / temperature (20 = ST's default scale).
"""

from __future__ import annotations

from typing import Any


def infonce(queries: Any, documents: Any, temperature: float = 0.05, weights: Any = None) -> Any:
    """``queries`` [B, d]; ``documents`` [B * (1 + n), d] laid out as B groups of (positive, n
    negatives), so query i's positive is row i * (1 + n). Mean (weighted) cross-entropy."""
    import torch
    import torch.nn.functional as F

    batch = queries.shape[0]
    group = documents.shape[0] // batch
    scores = queries.float() @ documents.float().T / temperature
    target = torch.arange(batch, device=scores.device) * group
    loss = F.cross_entropy(scores, target, reduction="none")
    if weights is not None:
        loss = loss * weights
    return loss.mean()


def per_sample(queries: Any, documents: Any, temperature: float = 0.05) -> Any:
    """The unreduced InfoNCE loss of each query (for loss-based sample reweighting)."""
    import torch
    import torch.nn.functional as F

    batch = queries.shape[0]
    group = documents.shape[0] // batch
    scores = queries.float() @ documents.float().T / temperature
    return F.cross_entropy(scores, torch.arange(batch, device=scores.device) * group, reduction="none")
