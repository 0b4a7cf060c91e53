"""Lexical distillation: the model learns, on its own corpus, what BM25 adds to it.

Spar (Chen et al. 2022, "Salient Phrase Aware Dense Retrieval: Can a Dense Retriever Imitate a
Sparse One?") trains a dense model to imitate BM25 on pseudo-queries drawn from the corpus. Here
the teacher is the starting model plus BM25, so what is learned is the lexical part the dense
model misses (rare terms, names, numbers) while its semantic part is kept: a pseudo-query is a
document's title or one of its sentences, drawn per document and epoch; the candidates are the
top ``depth`` of BM25 and of the starting model, and each candidate's teacher score is

    cos(q, d) / temperature + weight * bm25(q, d) / max over the query's candidates of bm25

(a candidate outside BM25's top ``depth`` counts 0). Each example holds the teacher's best
candidate and ``negatives`` others drawn at random from the rest, and the student learns the
teacher's score margins between the best and each other one (margin-MSE, Hofstätter et al. 2020;
with several negatives a query teaches the order of its candidate list, not one pair). The teacher
is frozen: the starting model's vectors are computed once, at the document length the student
trains with (so the student starts out agreeing with the teacher's dense part, and all it is
taught is what BM25 adds), and an epoch's examples are a pure function of (seed, epoch).

Since the teacher is a dot product plus a sparse BM25 part, it can score a pseudo-query against any
document at no cost: each example keeps its teacher query vector and BM25 part, so the trainer adds
in-batch distillation over every document of a batch (``inbatch``, TAS-B's dual supervision) and
fills each batch from one topic cluster of pseudo-queries (``topic_batches``), so that the other
documents of a batch are near misses. Defaults are the best setting measured (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.errors import ConfigError
from pretriever.training.pretrain._text import Doc, rng_for, sentences
from pretriever.training.pretrain.task import Student, Task


@dataclass(frozen=True)
class Options:
    weight: float = 3.0  # BM25's weight in the teacher, in units of 1/temperature of cosine
    negatives: int = 7  # candidates scored against the teacher's best one per pseudo-query
    depth: int = 30  # candidates: the top ``depth`` of BM25 and of the starting model
    inbatch: float = 4.0  # weight of in-batch distillation over every document of the batch (0: off)
    topic_batches: bool = True  # each batch from one k-means cluster of pseudo-queries

    def __post_init__(self) -> None:
        if self.weight < 0 or not 1 <= self.negatives < self.depth:
            raise ConfigError(f"lexical.weight must be >= 0 and 1 <= lexical.negatives < lexical.depth, got "
                              f"{self.weight}, {self.negatives} and {self.depth}")
        if self.inbatch < 0:
            raise ConfigError(f"lexical.inbatch must be >= 0 (0: off), got {self.inbatch}")


@dataclass(frozen=True)
class ScoredList:
    """A pseudo-query, the teacher's best candidate then others, and the teacher's scores of each,
    with what the teacher needs to score the query against any other document of a batch: its
    vector (the dense part) and BM25's weighted part for the documents in BM25's top ``depth``."""

    query: str
    documents: tuple[str, ...]
    scores: tuple[float, ...]
    doc_id: str  # the document the query was drawn from
    doc_ids: tuple[str, ...] = ()  # the candidates' ids, in the order of ``documents``
    vector: Any = field(default=None, compare=False, repr=False)
    lexical: tuple[tuple[str, float], ...] = field(default=(), compare=False, repr=False)

    @property
    def margins(self) -> tuple[float, ...]:
        """The teacher's margin between its best candidate and each other one (all >= 0)."""
        return tuple(self.scores[0] - s for s in self.scores[1:])


def pseudo_queries(docs: Sequence[Doc], *, seed: int = 42, epoch: int = 0) -> dict[str, str]:
    """Document id -> a pseudo-query: its title or one of its sentences, drawn uniformly among the
    kinds the document has."""
    rng = rng_for(seed, epoch, "lexical")
    out = {}
    for doc in docs:
        parts = sentences(doc.text)
        title = doc.title.strip()
        have = [kind for kind, ok in (("title", title), ("sentence", parts)) if ok]
        if not have:
            continue
        kind = have[0] if len(have) == 1 else have[int(rng.random() * len(have))]
        out[doc.id] = title if kind == "title" else parts[int(rng.integers(len(parts)))]
    return out


class LexicalTeacher:
    """BM25 and the frozen starting model over one corpus, scoring pseudo-queries' candidates."""

    def __init__(self, corpus: Any, base: str, *, weight: float, temperature: float, depth: int,
                 max_length: int | None = None, work_dir: Path | None = None, progress: bool = True) -> None:
        from pretriever.encoders.dense import DenseEncoder
        from pretriever.indexes.bm25 import BM25Index
        from pretriever.indexes.dense import FlatIndex

        self.weight, self.temperature, self.depth = weight, temperature, depth
        self.progress = progress
        self.ids = list(corpus.ids)
        self.texts = corpus.text_map()
        self.bm25 = BM25Index(progress=progress).build(corpus)
        # the student's max length: its starting scores then equal the teacher's dense part
        self.encoder = DenseEncoder(base, max_length=max_length)
        self.dense = FlatIndex(self.encoder, progress=progress, work_dir=work_dir).build(corpus)
        self.vectors = np.asarray(self.dense.vectors, dtype=np.float32)
        self.row = {d: i for i, d in enumerate(self.ids)}

    def scores(self, queries: dict[str, str]) -> dict[str, dict[str, float]]:
        """Query id -> candidate document id -> teacher score."""
        return self.scores_and_parts(queries)[0]

    def scores_and_parts(self, queries: dict[str, str]
                         ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, dict[str, float]]]:
        """``scores``, with each query's vector and BM25 part (weighted, per candidate)."""
        qids = list(queries)
        lexical = self.bm25.search(queries, k=self.depth)
        qv = self.encoder.encode_queries([queries[q] for q in qids], progress=self.progress)
        parts = {}
        for qid in qids:
            bm = lexical.get(qid, {})
            best = max(bm.values(), default=0.0) or 1.0
            parts[qid] = {d: self.weight * s / best for d, s in bm.items()}
        dense = self.dense.search_vectors(qids, qv, self.depth)
        out = {}
        for i, qid in enumerate(qids):
            cosines = dict(dense.get(qid, {}))
            cosines.update({d: float(self.vectors[self.row[d]] @ qv[i]) for d in parts[qid]
                            if d not in cosines})
            out[qid] = {d: cos / self.temperature + parts[qid].get(d, 0.0) for d, cos in cosines.items()}
        return out, dict(zip(qids, qv)), parts

    def batch_scores(self, lists: Sequence[ScoredList], doc_ids: Sequence[str]) -> np.ndarray:
        """[len(lists), len(doc_ids)] teacher scores of every list's query against every document
        (in-batch distillation): the same formula as ``scores``, for documents that were not
        among a query's candidates too."""
        queries = np.stack([np.asarray(ex.vector, dtype=np.float32) for ex in lists])
        out = queries @ self.vectors[[self.row[d] for d in doc_ids]].T / self.temperature
        column = {d: j for j, d in enumerate(doc_ids)}
        for i, ex in enumerate(lists):
            for d, part in ex.lexical:
                if d in column:
                    out[i, column[d]] += part
        return out


def epoch_docs(docs: Sequence[Doc], max_examples: int | None, seed: int, epoch: int) -> list[Doc]:
    """The documents an epoch draws pseudo-queries from: a seeded sample of ``max_examples`` (only
    the pseudo-queries that can be kept are scored), or all of them."""
    if max_examples is None:
        return list(docs)
    keep = rng_for(seed, epoch, "lexical:docs").permutation(len(docs))
    return [docs[i] for i in sorted(keep[:max_examples])]


def batch_order(lists: Sequence[ScoredList], batch_size: int, topic_batches: bool,
                rng: np.random.Generator) -> np.ndarray:
    """The order batches are cut from: runs of one topic cluster of pseudo-queries (their teacher
    vectors) when ``topic_batches``, else a seeded shuffle."""
    if not topic_batches or len(lists) < 2:
        return rng.permutation(len(lists))
    from pretriever.training.clustering import topic_order

    return topic_order(np.stack([ex.vector for ex in lists]), batch_size, rng)


def inbatch_targets(teacher: LexicalTeacher, batch: Sequence[ScoredList]) -> tuple[list[int], np.ndarray]:
    """In-batch distillation's targets: the rows (in the batch's documents, each list's candidates
    in turn) of every distinct document, and the teacher's scores of each query against them."""
    ids = [doc for ex in batch for doc in ex.doc_ids]
    first = {doc: j for j, doc in reversed(list(enumerate(ids)))}
    keep = sorted(first.values())
    return keep, teacher.batch_scores(batch, [ids[j] for j in keep])


def lexical_lists(docs: Sequence[Doc], teacher: LexicalTeacher, *, negatives: int = 1, seed: int = 42,
                  epoch: int = 0) -> list[ScoredList]:
    """One example per document with a pseudo-query and at least ``1 + negatives`` candidates."""
    queries = pseudo_queries(docs, seed=seed, epoch=epoch)
    scored, vectors, parts = teacher.scores_and_parts(queries)
    rng = rng_for(seed, epoch, "lexical:pairs")
    lists = []
    for doc_id, query in queries.items():
        ranked = sorted(scored.get(doc_id, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) < 1 + negatives:
            continue
        others = rng.choice(len(ranked) - 1, negatives, replace=False)
        picked = [ranked[0]] + [ranked[1 + int(i)] for i in others]
        lists.append(ScoredList(query, tuple(teacher.texts[d] for d, _ in picked),
                                tuple(score for _, score in picked), doc_id, tuple(d for d, _ in picked),
                                vectors[doc_id], tuple(parts[doc_id].items())))
    return lists


class Lexical(Task):
    name = "lexical"
    Options = Options
    needs = ("lexical needs documents with a title or a sentence, and 1 + lexical.negatives candidates for "
             "each pseudo-query")

    def __init__(self, options: Options, context: Any) -> None:
        super().__init__(options, context)
        self.teacher = LexicalTeacher(context.corpus, context.base, weight=options.weight,
                                      temperature=context.temperature, depth=options.depth,
                                      max_length=context.max_length, work_dir=context.work_dir / "teacher",
                                      progress=context.progress)

    def examples(self, epoch: int) -> list[ScoredList]:
        docs = epoch_docs(self.context.docs, self.context.max_examples, self.context.seed, epoch)
        return lexical_lists(docs, self.teacher, negatives=self.options.negatives, seed=self.context.seed,
                             epoch=epoch)

    def order(self, examples: list[ScoredList], rng: np.random.Generator) -> np.ndarray:
        return batch_order(examples, self.context.batch_size, self.options.topic_batches, rng)

    def tokens_per_step(self, batch_size: int, max_length: int, query_max_length: int) -> int:
        return batch_size * (query_max_length + (1 + self.options.negatives) * max_length)

    def loss(self, student: Student, batch: list[ScoredList], generator: Any) -> Any:
        import torch

        from pretriever.training.objectives.inbatch_kd import inbatch_kl
        from pretriever.training.objectives.margin_mse import margin_mse

        teacher_scores = torch.tensor([ex.scores for ex in batch], device=student.device)
        every, keep = None, []
        if self.options.inbatch:
            keep, scores = inbatch_targets(self.teacher, batch)
            every = torch.tensor(scores, device=student.device)

        def lexical_loss(reps: list[Any]) -> Any:
            q, d = reps
            loss = margin_mse(q, d, teacher_scores, student.temperature)
            if every is not None:
                loss = loss + self.options.inbatch * inbatch_kl(q, d[keep], every, student.temperature)
            return loss

        queries = [student.prompts["query"] + ex.query for ex in batch]
        documents = [student.prompts["document"] + t for ex in batch for t in ex.documents]
        return student.embedded_loss([(student.embedder(student.query_max_length), queries),
                                      (student.embedder(student.max_length), documents)], lexical_loss)
