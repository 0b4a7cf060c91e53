"""RM3 pseudo-relevance feedback for BM25 (Lavrenko & Croft 2001, "Relevance-based language
models"; Abdul-Jaleel et al. 2004, "UMass at TREC 2004", which interpolates the relevance model
with the original query), in Anserini's formulation, whose defaults Pyserini uses.

The relevance model is estimated from the first search's top ``fb_docs`` documents: each
document's term distribution (its term counts, cut to its ``fb_terms`` most frequent terms, then
divided by their sum) weighted by the document's retrieval score, summed, cut to the
``fb_terms`` heaviest terms and normalised to sum 1. Terms in more than ``max_df`` of the
documents are not feedback terms (Anserini's 10% rule, in place of a stopword list). The new
query is ``original_weight`` x the original query's term distribution + (1 - ``original_weight``)
x the relevance model, and every term's BM25 score counts with its weight.

Ties (equal counts or weights) are broken by the term itself, so the expansion is deterministic.

``max_query_terms`` (0 = off, Anserini's behaviour) expands only queries of at most that many
indexed terms: feedback helps under-specified short queries and can drift long ones (measured on
five collections: RESULTS.md, "Label-free fusion and pseudo-relevance feedback").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

from pretriever.errors import ConfigError

FEEDBACK_TERM = re.compile(r"[a-z0-9]{2,20}")  # Anserini keeps plain lowercase terms of 2-20 chars


@dataclass(frozen=True)
class RM3:
    """RM3's options; the defaults are Pyserini's (10 documents, 10 terms, weight 0.5)."""

    fb_docs: int = 10
    fb_terms: int = 10
    original_weight: float = 0.5
    max_df: float = 0.1
    max_query_terms: int = 0
    name: ClassVar[str] = "rm3"

    def __post_init__(self) -> None:
        if self.fb_docs < 0 or self.fb_terms < 0:
            raise ConfigError(
                f"rm3 needs fb_docs >= 0 and fb_terms >= 0, got {self.fb_docs}, {self.fb_terms}"
            )
        if not 0.0 <= self.original_weight <= 1.0:
            raise ConfigError(f"rm3 original_weight must be in [0, 1], got {self.original_weight}")
        if self.max_query_terms < 0:
            raise ConfigError(f"rm3 max_query_terms must be >= 0 (0 = all), got {self.max_query_terms}")
        if not 0.0 < self.max_df <= 1.0:
            raise ConfigError(f"rm3 max_df must be in (0, 1], got {self.max_df}")

    @property
    def active(self) -> bool:
        """False when no feedback can change the query (k = 0 documents or terms)."""
        return self.fb_docs > 0 and self.fb_terms > 0 and self.original_weight < 1.0

    def applies(self, query_terms: int) -> bool:
        """Whether a query of this many indexed terms is expanded (``max_query_terms``, 0 = all)."""
        return self.max_query_terms == 0 or query_terms <= self.max_query_terms

    def to_dict(self) -> dict[str, object]:
        return {"method": self.name, **asdict(self)}


def _top(weights: dict[str, float], n: int) -> dict[str, float]:
    """The ``n`` heaviest entries; ties go to the alphabetically first term."""
    return dict(sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:n])


def relevance_model(
    documents: Sequence[dict[str, int]], scores: Sequence[float], fb_terms: int
) -> dict[str, float]:
    """RM1 over the feedback documents: sum over documents of score x P(term | document), with each
    document cut to its ``fb_terms`` most frequent terms; cut to ``fb_terms`` and normalised."""
    model: Counter[str] = Counter()
    for counts, score in zip(documents, scores):
        kept = _top({t: float(c) for t, c in counts.items()}, fb_terms)
        norm = sum(kept.values())
        if norm <= 0:
            continue
        for term, count in kept.items():
            model[term] += count / norm * float(score)
    model = Counter(_top(dict(model), fb_terms))
    total = sum(model.values())
    return {t: w / total for t, w in model.items()} if total > 0 else {}


def expand(query_terms: Iterable[str], model: dict[str, float], original_weight: float) -> dict[str, float]:
    """The expanded query: original_weight x the query's term distribution + the rest x ``model``."""
    counts = Counter(query_terms)
    total = sum(counts.values())
    weights: Counter[str] = Counter()
    for term, count in counts.items():
        weights[term] += original_weight * count / total
    for term, weight in model.items():
        weights[term] += (1.0 - original_weight) * weight
    return dict(weights)
