"""Listwise softmax cross-entropy over one positive and n negatives (the "localized contrastive
estimation" of Gao et al. 2021, "Rethink Training of BERT Rerankers in Multi-Stage Retrieval
Pipeline"; the same form as InfoNCE, van den Oord et al. 2018)."""

from __future__ import annotations

from typing import Any


def listwise_softmax(logits: Any, weights: Any = None, temperature: float = 1.0) -> Any:
    """``logits``: [groups, 1 + n], the positive in column 0. Mean over groups of -log softmax of
    the positive, each group's term scaled by its weight (if given)."""
    import torch.nn.functional as F

    loss = -F.log_softmax(logits.float() / temperature, dim=1)[:, 0]
    if weights is not None:
        loss = loss * weights
    return loss.mean()
