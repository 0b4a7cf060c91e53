"""Lexical distillation: the model learns, on its own corpus, what BM25 adds to it.

Spar (Chen et al. 2022, "Salient Phrase Aware Dense Retrieval: Can a Dense Retriever Imitate a
Sparse One?") trains a dense model to imitate BM25 on pseudo-queries drawn from the corpus. Here
the teacher is the starting model plus BM25, so what is learned is the lexical part the dense
model misses (rare terms, names, numbers) while its semantic part is kept: pseudo-queries are a
document's title, one of its sentences or (optionally) a few keywords of its title, or a topic
term of its title that other documents share, drawn per document and epoch; the candidates are the
top ``depth`` of BM25 and of the starting model, and each candidate's teacher score is

    cos(q, d) / temperature + weight * bm25(q, d) / max over the query's candidates of bm25

(a candidate outside BM25's top ``depth`` counts 0). Each example holds the teacher's best
candidate and ``negatives`` others drawn at random from the rest, and the student learns the
teacher's score margins between the best and each other one (margin-MSE, Hofstätter et al. 2020;
with several negatives a query teaches the order of its candidate list, not one pair). The teacher
is frozen: the starting model's vectors are computed once, by default at the document length the
student trains with (so the student starts out agreeing with the teacher's dense part; the
trainer's ``lexical_teacher`` and ``lexical_teacher_length`` choose another model or length), and
an epoch's examples are a pure function of (seed, epoch).

Since the teacher is a dot product plus a sparse BM25 part, it can score a pseudo-query against any
document at no cost: each example keeps its teacher query vector and BM25 part, so the trainer can
add in-batch distillation over every document of a batch (TAS-B's dual supervision), fill batches
from one topic cluster, and teach extra keyword queries of a document through that loss alone.
With ``feedback`` the teacher's query vector first moves towards its own top documents (Rocchio),
a stronger teacher on real NFCorpus queries that did not make a stronger student (RESULTS.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.training.pretrain._text import Doc, rng_for, sentences
from pretriever.training.pretrain.prop import STOPWORDS


@dataclass(frozen=True)
class TeacherQuery:
    """A pseudo-query with what the teacher needs to score it against any document: its vector
    (the dense part) and BM25's weighted part for the documents in BM25's top ``depth`` (0 elsewhere)."""

    query: str
    vector: Any = field(compare=False, repr=False)
    lexical: tuple[tuple[str, float], ...] = field(compare=False, repr=False)


@dataclass(frozen=True)
class ScoredList:
    """A pseudo-query, the teacher's best candidate then others, and the teacher's scores of each."""

    query: str
    documents: tuple[str, ...]
    scores: tuple[float, ...]
    doc_id: str  # the document the query was drawn from
    doc_ids: tuple[str, ...] = ()  # the candidates' ids, in the order of ``documents``
    # as in TeacherQuery: what the teacher needs to score this query against any document of a batch
    vector: Any = field(default=None, compare=False, repr=False)
    lexical: tuple[tuple[str, float], ...] = field(default=(), compare=False, repr=False)
    # more pseudo-queries of the same document, taught only by in-batch distillation
    extra: tuple[TeacherQuery, ...] = field(default=(), compare=False, repr=False)

    @property
    def margins(self) -> tuple[float, ...]:
        """The teacher's margin between its best candidate and each other one (all >= 0)."""
        return tuple(self.scores[0] - s for s in self.scores[1:])


QUERY_KINDS = ("title", "sentence", "keywords", "topic")
DEFAULT_QUERY_KINDS = ("title", "sentence")
_TOKEN = re.compile(r"[\w'\-]+|[^\w\s]")


def keyword_spans(text: str) -> list[str]:
    """Every run of 1-3 consecutive content words in ``text`` (no stop word, punctuation or
    number inside), the shape of a keyword query such as "saturated fat" or "betel nuts"."""
    spans, run = [], []
    for token in [*_TOKEN.findall(text), "."]:
        if token.isalpha() and token.lower() not in STOPWORDS and len(token) > 1:
            run.append(token)
            continue
        spans += [" ".join(run[i : i + n]) for n in (1, 2, 3) for i in range(len(run) - n + 1)]
        run = []
    return spans


def topic_terms(texts: Mapping[str, str], *, min_df: int = 5, max_share: float = 0.05) -> frozenset[str]:
    """Keyword spans (lower-cased) that at least ``min_df`` documents of ``texts`` share and at most
    ``max_share`` of them: topic terms such as "breast cancer" or "statin". A query on one has many
    documents to rank, as a real topical query does; a rarer span of a title mostly has its own
    document alone, a commoner one is no topic ("patients")."""
    df = Counter(s for d in texts for s in {k.lower() for k in keyword_spans(texts[d])})
    most = max(min_df, max_share * len(texts))
    return frozenset(s for s, n in df.items() if min_df <= n <= most)


def pseudo_queries(docs: Sequence[Doc], *, kinds: Sequence[str] = DEFAULT_QUERY_KINDS, seed: int = 42,
                   epoch: int = 0, topics: frozenset[str] | None = None) -> dict[str, str]:
    """Document id -> a pseudo-query of one of ``kinds``, drawn uniformly among those the document
    has: its title, one of its sentences, keywords (1-3 consecutive content words of the title,
    else of the first sentence) or a topic (such keywords among ``topics``, ``topic_terms`` of the
    whole corpus, of ``docs`` when not given, that the document uses twice)."""
    rng = rng_for(seed, epoch, "lexical")
    if topics is None and "topic" in kinds:
        topics = topic_terms({doc.id: doc.full for doc in docs})
    out = {}
    for doc in docs:
        parts = sentences(doc.text)
        title = doc.title.strip()
        keywords = (keyword_spans(title or (parts[0] if parts else ""))
                    if {"keywords", "topic"} & set(kinds) else [])
        on_topic = _on_topic(keywords, doc.full, topics) if "topic" in kinds and topics else []
        found = (("title", title), ("sentence", parts), ("keywords", keywords), ("topic", on_topic))
        have = [kind for kind, ok in found if ok and kind in kinds]
        if not have:
            continue
        kind = have[0] if len(have) == 1 else have[int(rng.random() * len(have))]
        if kind == "title":
            out[doc.id] = title
        elif kind == "sentence":
            out[doc.id] = parts[int(rng.integers(len(parts)))]
        else:
            spans = keywords if kind == "keywords" else on_topic
            out[doc.id] = spans[int(rng.integers(len(spans)))]
    return out


def _on_topic(keywords: Sequence[str], text: str, topics: frozenset[str]) -> list[str]:
    """The ``keywords`` (lower-cased) that are ``topics`` and that ``text`` uses at least twice:
    what the document is about ("irritable bowel"), not a word its title happens to hold
    ("nationwide")."""
    counts = Counter(k.lower() for k in keyword_spans(text))
    return sorted(k for k in {k.lower() for k in keywords} & topics if counts[k] >= 2)


class LexicalTeacher:
    """BM25 and the frozen starting model over one corpus, scoring pseudo-queries' candidates."""

    def __init__(self, corpus: Any, base: str, *, weight: float, temperature: float, depth: int,
                 max_length: int | None = None, feedback: int = 0, feedback_weight: float = 1.0,
                 work_dir: Path | None = None, progress: bool = True) -> None:
        from pretriever.encoders.dense import DenseEncoder
        from pretriever.indexes.bm25 import BM25Index
        from pretriever.indexes.dense import FlatIndex

        self.weight, self.temperature, self.depth = weight, temperature, depth
        self.feedback, self.feedback_weight = feedback, feedback_weight
        self.ids = list(corpus.ids)
        self.texts = corpus.text_map()
        self.bm25 = BM25Index(progress=progress).build(corpus)
        # the student's max length: its starting scores then equal the teacher's dense part, and
        # all it is taught is what BM25 adds
        self.encoder = DenseEncoder(base, max_length=max_length)
        self.dense = FlatIndex(self.encoder, progress=progress, work_dir=work_dir).build(corpus)
        self.vectors = np.asarray(self.dense.vectors, dtype=np.float32)
        self.row = {d: i for i, d in enumerate(self.ids)}
        self._topics: frozenset[str] | None = None

    def topics(self) -> frozenset[str]:
        """``topic_terms`` of the whole corpus (counted once: pseudo-queries are drawn per epoch)."""
        if self._topics is None:
            self._topics = topic_terms(self.texts)
        return self._topics

    def scores(self, queries: dict[str, str], exclude: dict[str, str] | None = None,
               ) -> dict[str, dict[str, float]]:
        """Query id -> candidate document id -> teacher score; ``exclude`` maps a query id to a
        document left out of its candidates (and of its BM25 normalisation)."""
        return self.scores_and_parts(queries, exclude)[0]

    def scores_and_parts(self, queries: dict[str, str], exclude: dict[str, str] | None = None,
               ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, dict[str, float]]]:
        """``scores``, with each query's vector and BM25 part (weighted, per candidate)."""
        exclude = exclude or {}
        qids, qv, parts = self.query_parts(queries, exclude)
        out = self._hybrid(qids, qv, parts, exclude)
        if self.feedback:
            qv = self._feedback(qids, qv, out)
            out = self._hybrid(qids, qv, parts, exclude)
        return out, dict(zip(qids, qv)), parts

    def _hybrid(self, qids: list[str], qv: np.ndarray, parts: dict[str, dict[str, float]],
                exclude: dict[str, str]) -> dict[str, dict[str, float]]:
        """The teacher's score of each query's candidates: the dense top ``depth`` and BM25's."""
        dense = self.dense.search_vectors(qids, qv, self.depth + 1)
        out = {}
        for i, qid in enumerate(qids):
            cosines = _top(dense.get(qid, {}), exclude.get(qid), self.depth)
            cosines.update({d: float(self.vectors[self.row[d]] @ qv[i]) for d in parts[qid]
                            if d not in cosines})
            out[qid] = {d: cos / self.temperature + parts[qid].get(d, 0.0) for d, cos in cosines.items()}
        return out

    def _feedback(self, qids: list[str], qv: np.ndarray, scores: dict[str, dict[str, float]]) -> np.ndarray:
        """Rocchio's pseudo-relevance feedback on the dense part: each query vector moved towards the
        mean vector of the teacher's top ``feedback`` documents (weight ``feedback_weight``), at the
        query vector's own length (Rocchio 1971). Documents on the query's topic then score higher
        than the query's words alone would have them."""
        moved = np.array(qv, dtype=np.float32, copy=True)
        for i, qid in enumerate(qids):
            top = sorted(scores.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))[: self.feedback]
            if top:
                moved[i] += self.feedback_weight * self.vectors[[self.row[d] for d, _ in top]].mean(axis=0)
        length = np.linalg.norm(np.asarray(qv, dtype=np.float32), axis=1, keepdims=True)
        return moved * length / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)

    def query_parts(self, queries: dict[str, str], exclude: dict[str, str] | None = None,
                    ) -> tuple[list[str], np.ndarray, dict[str, dict[str, float]]]:
        """Query ids, their vectors (rows) and weighted BM25 parts per candidate, without the dense
        candidate search: all that in-batch distillation needs of a query."""
        qids = list(queries)
        exclude = exclude or {}
        lexical = self.bm25.search(queries, k=self.depth + 1)
        qv = self.encoder.encode_queries([queries[q] for q in qids])
        parts = {}
        for qid in qids:
            bm = _top(lexical.get(qid, {}), exclude.get(qid), self.depth)
            best = max(bm.values(), default=0.0) or 1.0
            parts[qid] = {d: self.weight * s / best for d, s in bm.items()}
        return qids, qv, parts

    def batch_scores(self, lists: Sequence[ScoredList | TeacherQuery], doc_ids: Sequence[str]) -> np.ndarray:
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


def _top(hits: dict[str, float], drop: str | None, k: int) -> dict[str, float]:
    """The ``k`` best of ``hits`` other than ``drop``."""
    return dict(sorted(((d, s) for d, s in hits.items() if d != drop), key=lambda kv: -kv[1])[:k])


def extra_keywords(docs: Sequence[Doc], count: int, *, seed: int = 42, epoch: int = 0,
                   ) -> dict[str, list[str]]:
    """Document id -> up to ``count`` distinct keyword queries (1-3 consecutive content words) drawn
    from anywhere in its title and text: short queries that cover the document's vocabulary."""
    rng = rng_for(seed, epoch, "lexical:extra")
    out = {}
    for doc in docs:
        spans = sorted(set(keyword_spans(doc.full)))
        if spans:
            out[doc.id] = [spans[int(i)] for i in rng.permutation(len(spans))[:count]]
    return out


def lexical_lists(docs: Sequence[Doc], teacher: LexicalTeacher, *, negatives: int = 1,
                  drop_source: bool = False, kinds: Sequence[str] = DEFAULT_QUERY_KINDS, extra: int = 0,
                  seed: int = 42, epoch: int = 0) -> list[ScoredList]:
    """One example per document with a pseudo-query and at least ``1 + negatives`` candidates
    (``drop_source``: not counting the document the pseudo-query was drawn from), and ``extra``
    keyword queries of the same document for in-batch distillation."""
    queries = pseudo_queries(docs, kinds=kinds, seed=seed, epoch=epoch,
                             topics=teacher.topics() if "topic" in kinds else None)
    exclude = {d: d for d in queries} if drop_source else None
    scored, vectors, parts = teacher.scores_and_parts(queries, exclude)
    more: dict[str, list[TeacherQuery]] = {}
    if extra:
        drawn = extra_keywords([d for d in docs if d.id in queries], extra, seed=seed, epoch=epoch)
        keyed = {f"{d}\t{i}": q for d, qs in drawn.items() for i, q in enumerate(qs)}
        keys, extra_qv, extra_parts = teacher.query_parts(keyed)
        for key, vector in zip(keys, extra_qv):
            more.setdefault(key.split("\t")[0], []).append(
                TeacherQuery(keyed[key], vector, tuple(extra_parts[key].items())))
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
                                vectors[doc_id], tuple(parts[doc_id].items()),
                                tuple(more.get(doc_id, ()))))
    return lists
