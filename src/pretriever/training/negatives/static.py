"""Static hard negatives mixed with random negatives (Zhan et al. 2021, "Optimizing Dense
Retrieval Model Training with Hard Negatives", STAR).

Hard negatives come from a first-stage run over the training queries (any retriever: BM25,
dense, hybrid, or a run file); random negatives from the whole corpus. STAR's point is the mix:
hard negatives alone make training unstable, random ones alone teach too little.

False-negative protection: a document judged relevant (any grade > 0) to the query is never a
negative; optionally ``max_score_ratio`` also skips candidates whose first-stage score exceeds
that fraction of the positive's score (likely unjudged relevant documents, as in NV-Retriever's
positive-aware mining, Moreira et al. 2024). Sampling is seeded and keyed on the epoch, so an
epoch's examples are the same on every run and on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pretriever.errors import ConfigError
from pretriever.types import Qrels, Run


@dataclass(frozen=True)
class Example:
    """One training group: a query, one relevant document and its negatives, with the first-stage
    ranks (1-based; None when not retrieved) that difficulty heuristics use."""

    query_id: str
    positive: str
    negatives: tuple[str, ...]
    positive_rank: int | None
    negative_ranks: tuple[int | None, ...]


@dataclass(frozen=True)
class NegativeConfig:
    """How negatives are drawn. ``hard`` from ranks ``skip_top + 1 .. depth`` of the first stage,
    ``random`` from the corpus."""

    hard: int = 7
    random: int = 0
    depth: int = 100
    skip_top: int = 0
    max_score_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.hard < 0 or self.random < 0 or self.hard + self.random < 1:
            raise ConfigError("negatives: 'hard' and 'random' must be >= 0 and at least one of them > 0")
        if self.depth < 1 or not 0 <= self.skip_top < self.depth:
            raise ConfigError(f"negatives: need 0 <= skip_top < depth (got {self.skip_top}, {self.depth})")
        if self.max_score_ratio is not None and self.max_score_ratio <= 0:
            raise ConfigError(f"negatives: max_score_ratio must be > 0, got {self.max_score_ratio}")


def positives_of(qrels: Qrels) -> dict[str, list[str]]:
    """Relevant documents (grade > 0) of each query, sorted, queries without any dropped."""
    out = {q: sorted(d for d, g in docs.items() if g > 0) for q, docs in qrels.items()}
    return {q: docs for q, docs in sorted(out.items()) if docs}


def hard_pools(run: Run, qrels: Qrels, config: NegativeConfig) -> dict[str, list[tuple[str, int]]]:
    """Each query's candidate hard negatives as (doc id, 1-based rank), judged positives removed."""
    pools: dict[str, list[tuple[str, int]]] = {}
    for qid, positives in positives_of(qrels).items():
        scores = run.get(qid, {})
        order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: config.depth]
        cutoff = None
        if config.max_score_ratio is not None:
            retrieved = [scores[d] for d in positives if d in scores]
            if retrieved and max(retrieved) > 0:
                cutoff = config.max_score_ratio * max(retrieved)
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        pools[qid] = [
            (doc_id, rank) for rank, (doc_id, score) in enumerate(order, start=1)
            if rank > config.skip_top and doc_id not in relevant and (cutoff is None or score <= cutoff)
        ]
    return pools


def draw(pool: Sequence[tuple[str, int]], corpus_ids: Sequence[str], excluded: set[str],
         config: NegativeConfig, rng: np.random.Generator) -> list[tuple[str, int | None]]:
    """``config.hard`` negatives from ``pool`` (fewer if it is short, topped up at random) plus
    ``config.random`` from the corpus, never one in ``excluded``, never the same one twice."""
    picked: list[tuple[str, int | None]] = []
    if pool and config.hard:
        rows = rng.choice(len(pool), size=min(config.hard, len(pool)), replace=False)
        picked = [pool[i] for i in sorted(rows)]
    wanted = config.hard + config.random - len(picked)
    taken = excluded | {d for d, _ in picked}
    available = len(corpus_ids) - len(taken)
    attempts = 0
    while wanted > 0 and available > 0 and attempts < 50 * (wanted + 1):
        doc_id = corpus_ids[int(rng.integers(len(corpus_ids)))]
        attempts += 1
        if doc_id not in taken:
            picked.append((doc_id, None))
            taken.add(doc_id)
            wanted -= 1
            available -= 1
    return picked


def build_examples(run: Run, qrels: Qrels, corpus_ids: Sequence[str], config: NegativeConfig, *,
                   epoch: int, seed: int, rank_of: Run | None = None) -> list[Example]:
    """One example per (query, relevant document), negatives drawn afresh for ``epoch``, shuffled.

    Every example has exactly ``hard + random`` negatives (a corpus too small for that yields
    none). Deterministic in (run, qrels, config, epoch, seed).
    """
    rng = np.random.default_rng([seed, epoch])
    pools = hard_pools(run, qrels, config)
    ranks = {q: {d: r for r, (d, _) in enumerate(sorted(s.items(), key=lambda i: (-i[1], i[0])), 1)}
             for q, s in (rank_of or run).items()}
    examples: list[Example] = []
    for qid, positives in positives_of(qrels).items():
        excluded = {d for d, g in qrels[qid].items() if g > 0}
        for positive in positives:
            negatives = draw(pools[qid], corpus_ids, excluded, config, rng)
            if len(negatives) < config.hard + config.random:
                continue
            examples.append(Example(
                qid, positive, tuple(d for d, _ in negatives), ranks.get(qid, {}).get(positive),
                tuple(r for _, r in negatives),
            ))
    order = rng.permutation(len(examples))
    return [examples[i] for i in order]
