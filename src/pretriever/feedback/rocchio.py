"""Rocchio / vector pseudo-relevance feedback for dense retrieval (Rocchio 1971, "Relevance feedback
in information retrieval"; applied to dense retrievers by Li et al. 2023, "Pseudo relevance
feedback with deep language models and dense retrievers: successes and pitfalls", ACM TOIS).

The query vector becomes ``alpha`` x itself + ``beta`` x the mean of the first search's top
``fb_docs`` document vectors, and the index is searched again with it. No text is read, and the
query encoder runs once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from pretriever.errors import ConfigError


@dataclass(frozen=True)
class Rocchio:
    """Rocchio's options: how many top documents, and the weights of the query and of their mean."""

    fb_docs: int = 3
    alpha: float = 1.0
    beta: float = 0.5
    name: ClassVar[str] = "rocchio"

    def __post_init__(self) -> None:
        if self.fb_docs < 0:
            raise ConfigError(f"rocchio needs fb_docs >= 0, got {self.fb_docs}")
        if self.alpha < 0 or self.beta < 0 or self.alpha + self.beta == 0:
            raise ConfigError(f"rocchio needs alpha, beta >= 0, not both 0; got {self.alpha}, {self.beta}")

    @property
    def active(self) -> bool:
        """False when no feedback can change the ranking (k = 0 documents, or beta = 0)."""
        return self.fb_docs > 0 and self.beta > 0

    def to_dict(self) -> dict[str, object]:
        return {"method": self.name, **asdict(self)}


def expand(queries: np.ndarray, feedback: np.ndarray, options: Rocchio) -> np.ndarray:
    """``queries`` (n, dim) and the feedback documents' vectors (n, fb_docs, dim) -> new queries.

    A query with fewer feedback documents (a tiny corpus) has its missing rows as NaN: the mean is
    over the ones it has."""
    found = ~np.isnan(feedback[..., 0])  # (n, fb_docs): rows the first search returned
    count = found.sum(axis=1, keepdims=True)
    mean = np.where(found[..., None], feedback, 0.0).sum(axis=1) / np.maximum(count, 1)
    return (options.alpha * queries + options.beta * mean).astype(np.float32)
