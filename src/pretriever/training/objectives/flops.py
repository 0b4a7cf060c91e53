"""The FLOPS regulariser of learned sparse models (Paria et al. 2020, "Minimizing FLOPs to Learn
Efficient Sparse Representations"; used by SPLADE, Formal et al. 2021), and its IDF-aware variant
(Geng et al. 2024, "Towards Competitive Search Relevance for Inference-Free Learned Sparse
Retrievers", arXiv 2411.04403).

FLOPS is the sum over vocabulary terms of the squared mean weight of the term over a batch: the
expected number of multiplications a query and a document share, so it penalises terms that many
documents carry (long posting lists) more than terms few carry. Applied alike to every term, it
also pushes down the rare, informative terms that carry the relevance of an inference-free model,
whose query side weighs each term by its IDF. The IDF-aware variant scales each term's penalty
down by its corpus IDF: a term weighs ``mean(idf) / idf_j`` (the mean over the terms with a
positive IDF), so that with every IDF equal it is plain FLOPS, and frequent terms pay more than rare ones.
Terms with IDF 0 (special tokens) pay what the lowest positive IDF pays.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def flops(representations: Any, penalty: Any = None) -> Any:
    """``representations`` [N, V] non-negative term weights of a batch; ``penalty`` [V] per-term
    weights (None: 1, plain FLOPS). Sum over terms of penalty * (mean weight over the batch)^2."""
    mean = representations.float().abs().mean(dim=0)
    squared = mean * mean
    return (squared * penalty).sum() if penalty is not None else squared.sum()


def idf_penalty(idf: np.ndarray) -> np.ndarray:
    """Per-term FLOPS weights from corpus IDFs: ``mean(idf) / idf``, so equal IDFs give 1 for every
    term (plain FLOPS); terms with IDF 0 get the weight of the lowest positive IDF."""
    idf = np.asarray(idf, dtype=np.float64)
    positive = idf[idf > 0]
    if not len(positive):
        return np.ones_like(idf, dtype=np.float32)
    floored = np.maximum(idf, positive.min())
    return (positive.mean() / floored).astype(np.float32)


def used_terms(representations: Any) -> float:
    """The mean number of non-zero terms per row (what the index will hold per document)."""
    return float((representations > 0).float().sum(dim=1).mean())
