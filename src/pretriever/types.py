"""Plain data that crosses every boundary: qrels, runs, queries, documents, hits.

Runs and qrels are dict-of-dict (query id -> document id -> score/grade), the shape ranx, BEIR,
ir_measures and pytrec_eval all speak, so nothing needs converting at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> graded relevance (0 = judged non-relevant)."""

Run = dict[str, dict[str, float]]
"""query id -> document id -> score (higher is better)."""

Queries = dict[str, str]
"""query id -> query text."""


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus entry. ``title`` is empty when the source has none."""

    id: str
    text: str
    title: str = ""

    @property
    def contents(self) -> str:
        """Title and text joined the way every index sees them."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked result of a search: 1-based rank, document id and score."""

    rank: int
    doc_id: str
    score: float
