"""Pointwise binary cross-entropy on (query, document) logits (Nogueira & Cho 2019, monoBERT)."""

from __future__ import annotations

from typing import Any


def bce(logits: Any, labels: Any, weights: Any = None) -> Any:
    """Mean of per-pair binary cross-entropy, each pair's term scaled by its weight (if given).

    ``logits``, ``labels`` (1 relevant / 0 not) and ``weights``: tensors of the same shape.
    """
    import torch.nn.functional as F

    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    if weights is not None:
        loss = loss * weights
    return loss.mean()
