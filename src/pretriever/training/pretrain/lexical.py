"""Lexical distillation: the model learns, on its own corpus, what BM25 adds to it.

Spar (Chen et al. 2022, "Salient Phrase Aware Dense Retrieval: Can a Dense Retriever Imitate a
Sparse One?") trains a dense model to imitate BM25 on pseudo-queries drawn from the corpus. Here
the teacher is the starting model plus BM25, so what is learned is the lexical part the dense
model misses (rare terms, names, numbers) while its semantic part is kept: pseudo-queries are a
document's title or one of its sentences (a coin flip per document and epoch), the candidates are
the top ``depth`` of BM25 and of the starting model, and each candidate's teacher score is

    cos(q, d) / temperature + weight * bm25(q, d) / max over the query's candidates of bm25

(a candidate outside BM25's top ``depth`` counts 0). Each example pairs the teacher's best
candidate with another drawn at random, and the student learns the teacher's score margin
(margin-MSE, Hofstätter et al. 2020). The teacher is frozen: the starting model's vectors are
computed once, at the document length the student trains with (so the student starts out agreeing
with the teacher's dense part), and an epoch's examples are a pure function of (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.training.pretrain._text import Doc, rng_for, sentences


@dataclass(frozen=True)
class ScoredPair:
    """A pseudo-query, the teacher's best candidate and another one, and the teacher's margin."""

    query: str
    positive: str
    negative: str
    margin: float
    doc_id: str  # the document the query was drawn from


def pseudo_queries(docs: Sequence[Doc], *, seed: int = 42, epoch: int = 0) -> dict[str, str]:
    """Document id -> its title or one of its sentences (a coin flip; the sentence when it has no
    title)."""
    rng = rng_for(seed, epoch, "lexical")
    out = {}
    for doc in docs:
        parts = sentences(doc.text)
        title = doc.title.strip()
        if title and (not parts or rng.random() < 0.5):
            out[doc.id] = title
        elif parts:
            out[doc.id] = parts[int(rng.integers(len(parts)))]
    return out


class LexicalTeacher:
    """BM25 and the frozen starting model over one corpus, scoring pseudo-queries' candidates."""

    def __init__(self, corpus: Any, base: str, *, weight: float, temperature: float, depth: int,
                 max_length: int | None = None, work_dir: Path | None = None, progress: bool = True) -> None:
        from pretriever.encoders.dense import DenseEncoder
        from pretriever.indexes.bm25 import BM25Index
        from pretriever.indexes.dense import FlatIndex

        self.weight, self.temperature, self.depth = weight, temperature, depth
        self.ids = list(corpus.ids)
        self.texts = corpus.text_map()
        self.bm25 = BM25Index(progress=progress).build(corpus)
        # the student's max length: its starting scores then equal the teacher's dense part, and
        # all it is taught is what BM25 adds
        self.encoder = DenseEncoder(base, max_length=max_length)
        self.dense = FlatIndex(self.encoder, progress=progress, work_dir=work_dir).build(corpus)
        self.vectors = np.asarray(self.dense.vectors, dtype=np.float32)
        self.row = {d: i for i, d in enumerate(self.ids)}

    def scores(self, queries: dict[str, str]) -> dict[str, dict[str, float]]:
        """Query id -> candidate document id -> teacher score."""
        qids = list(queries)
        lexical = self.bm25.search(queries, k=self.depth)
        qv = self.encoder.encode_queries([queries[q] for q in qids])
        dense = self.dense.search_vectors(qids, qv, self.depth)
        out = {}
        for i, qid in enumerate(qids):
            bm = lexical.get(qid, {})
            best = max(bm.values(), default=0.0) or 1.0
            cosines = dict(dense.get(qid, {}))
            cosines.update({d: float(self.vectors[self.row[d]] @ qv[i]) for d in bm if d not in cosines})
            out[qid] = {d: cos / self.temperature + self.weight * bm.get(d, 0.0) / best
                        for d, cos in cosines.items()}
        return out


def lexical_pairs(docs: Sequence[Doc], teacher: LexicalTeacher, *, seed: int = 42,
                  epoch: int = 0) -> list[ScoredPair]:
    """One example per document with a pseudo-query and at least two candidates."""
    queries = pseudo_queries(docs, seed=seed, epoch=epoch)
    scored = teacher.scores(queries)
    rng = rng_for(seed, epoch, "lexical:pairs")
    pairs = []
    for doc_id, query in queries.items():
        ranked = sorted(scored.get(doc_id, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) < 2:
            continue
        (best, top), (other, low) = ranked[0], ranked[1 + int(rng.integers(len(ranked) - 1))]
        pairs.append(ScoredPair(query, teacher.texts[best], teacher.texts[other], top - low, doc_id))
    return pairs
