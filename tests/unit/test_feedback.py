"""Pseudo-relevance feedback: RM3 against a hand computation of Anserini's formulation, Rocchio
against the vector arithmetic, determinism, k = 0 = no feedback, and the manifest round trip."""

from __future__ import annotations

import numpy as np
import pytest

from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError
from pretriever.feedback import RM3, Rocchio, feedback_from_dict, parse_feedback
from pretriever.indexes.bm25 import BM25Index
from pretriever.indexes.dense import FlatIndex
from pretriever.types import Document

DOCS = [
    {"_id": "d1", "title": "", "text": "apple banana apple cherry"},
    {"_id": "d2", "title": "", "text": "apple date date date elder"},
    {"_id": "d3", "title": "", "text": "fig grape banana"},
    {"_id": "d4", "title": "", "text": "date fig"},
]


def _bm25(feedback: RM3 | None) -> BM25Index:
    corpus = Corpus.from_documents(DOCS)
    return BM25Index(stopwords="none", stemmer="none", feedback=feedback, progress=False).build(corpus)


def test_rm3_expansion_matches_a_hand_computation() -> None:
    plain = _bm25(None)
    s1, s2 = (plain.search({"q": "apple"}, k=10)["q"][d] for d in ("d1", "d2"))
    assert s1 > s2 > 0
    rm3 = RM3(fb_docs=2, fb_terms=3, original_weight=0.4, max_df=1.0)
    # d1 -> apple 2/4, banana 1/4, cherry 1/4; d2 cut to its 3 most frequent: date 3/5, apple 1/5,
    # elder 1/5 (all three kept). Weighted by the BM25 scores, summed, cut to 3 terms, normalised.
    model = {"apple": 0.5 * s1 + 0.2 * s2, "banana": 0.25 * s1, "cherry": 0.25 * s1,
             "date": 0.6 * s2, "elder": 0.2 * s2}
    top = dict(sorted(model.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
    total = sum(top.values())
    expected = {t: 0.6 * w / total for t, w in top.items()}
    expected["apple"] = expected.get("apple", 0.0) + 0.4
    got = _bm25(rm3).expansion("apple")
    assert got.keys() == expected.keys()
    for term, weight in expected.items():
        assert got[term] == pytest.approx(weight, rel=1e-6)


def test_rm3_scores_are_the_weighted_sum_of_term_scores() -> None:
    rm3 = RM3(fb_docs=2, fb_terms=3, original_weight=0.4, max_df=1.0)
    index, plain = _bm25(rm3), _bm25(None)
    weights = index.expansion("apple")
    run = index.search({"q": "apple"}, k=10)["q"]
    expected: dict[str, float] = {}
    for term, weight in weights.items():
        for doc, score in plain.search({"t": term}, k=10)["t"].items():
            expected[doc] = expected.get(doc, 0.0) + weight * score
    assert run.keys() == expected.keys()
    for doc, score in expected.items():
        assert run[doc] == pytest.approx(score, rel=1e-5)
    assert "d4" in run  # reached only through the feedback term "date"


def test_rm3_anserini_document_frequency_rule() -> None:
    # with the default max_df (10%), every term of this 4-document corpus is too common to feed back
    assert _bm25(RM3(fb_docs=2, fb_terms=3)).expansion("apple") == {"apple": 0.5}


@pytest.mark.parametrize("zero", [RM3(fb_docs=0), RM3(fb_terms=0), RM3(original_weight=1.0)])
def test_rm3_with_nothing_to_feed_back_equals_plain_bm25(zero: RM3) -> None:
    queries = {"a": "apple", "b": "date fig", "c": "unknownterm"}
    assert _bm25(zero).search(queries, k=10) == _bm25(None).search(queries, k=10)


def test_rm3_is_deterministic_stays_in_the_corpus_and_round_trips(tmp_path) -> None:
    index = _bm25(RM3(fb_docs=2, fb_terms=3, max_df=1.0))
    queries = {"a": "apple", "b": "banana fig", "c": "unknownterm"}
    first = index.search(queries, k=3)
    assert first == index.search(queries, k=3)
    assert first["c"] == {}
    assert all(d in {"d1", "d2", "d3", "d4"} for hits in first.values() for d in hits)
    assert all(len(hits) <= 3 for hits in first.values())
    loaded = BM25Index.load(index.save(tmp_path / "bm25"))
    assert loaded.feedback == index.feedback
    assert loaded.search(queries, k=3) == first


def test_rm3_on_an_index_without_term_counts_says_to_rebuild(tmp_path) -> None:
    old = _bm25(None)
    old._doc_terms = None  # as an index saved before every BM25 index kept its term counts
    loaded = BM25Index.load(old.save(tmp_path / "bm25"))
    loaded.feedback = RM3()
    with pytest.raises(ConfigError, match="rebuild"):
        loaded.search({"q": "apple"})
    with pytest.raises(ConfigError, match="rebuild"):
        loaded.add([Document("new", "apple pie")])


class _Stub:
    """An encoder spec for vectors given by hand (queries are searched with search_vectors)."""

    def spec(self) -> dict:
        return {"kind": "encoder.dense", "model": "stub"}


def _flat(feedback: Rocchio | None) -> FlatIndex:
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    corpus = Corpus.from_documents([{"_id": f"v{i}", "title": "", "text": str(i)} for i in range(4)])
    return FlatIndex.from_vectors(vectors, corpus, _Stub(), feedback=feedback)


def test_rocchio_moves_the_query_towards_its_top_documents() -> None:
    q = np.array([[0.9, -0.1]], dtype=np.float32)
    index = _flat(Rocchio(fb_docs=2, alpha=1.0, beta=2.0))
    run = index.search_vectors(["q"], q, 4)["q"]
    # top 2 of q: v0 (0.9), v1 (0.66); new query = q + 2 x mean(v0, v1) = (2.7, 0.5)
    expected = {"v0": 2.7, "v1": 0.8 * 2.7 + 0.6 * 0.5, "v2": 0.5, "v3": -2.7}
    assert run.keys() == expected.keys()
    for doc, score in expected.items():
        assert run[doc] == pytest.approx(score, rel=1e-5)


@pytest.mark.parametrize("zero", [Rocchio(fb_docs=0), Rocchio(beta=0.0)])
def test_rocchio_with_nothing_to_feed_back_equals_no_feedback(zero: Rocchio) -> None:
    q = np.array([[0.9, -0.1], [0.1, 0.2]], dtype=np.float32)
    assert _flat(zero).search_vectors(["a", "b"], q, 3) == _flat(None).search_vectors(["a", "b"], q, 3)


def test_rocchio_is_deterministic_and_stays_in_the_corpus() -> None:
    q = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    index = _flat(Rocchio(fb_docs=10))  # more feedback documents than the corpus holds
    first = index.search_vectors([str(i) for i in range(5)], q, 10)
    assert first == index.search_vectors([str(i) for i in range(5)], q, 10)
    assert all(set(hits) <= {"v0", "v1", "v2", "v3"} and len(hits) == 4 for hits in first.values())


def test_feedback_options_parse_validate_and_round_trip() -> None:
    assert parse_feedback("none") is None and parse_feedback(None) is None
    assert parse_feedback("rm3") == RM3()
    assert parse_feedback("rm3:fb_docs=5,original_weight=0.3") == RM3(fb_docs=5, original_weight=0.3)
    assert parse_feedback("rocchio:beta=1") == Rocchio(beta=1.0)
    assert feedback_from_dict(RM3(fb_terms=7).to_dict()) == RM3(fb_terms=7)
    with pytest.raises(ConfigError, match="unknown feedback method 'rm4'"):
        parse_feedback("rm4")
    with pytest.raises(ConfigError, match="valid: fb_docs"):
        parse_feedback("rm3:docs=5")
    with pytest.raises(ConfigError, match="expected a number"):
        parse_feedback("rm3:fb_docs=many")
    with pytest.raises(ConfigError, match="rocchio"):
        BM25Index(feedback=Rocchio()).build(Corpus.from_documents(DOCS))
    with pytest.raises(ConfigError, match="rm3"):
        FlatIndex("minilm", feedback=RM3())


def test_rm3_max_query_terms_expands_only_short_queries() -> None:
    gated = _bm25(RM3(fb_docs=2, fb_terms=3, max_df=1.0, max_query_terms=1))
    full, plain = _bm25(RM3(fb_docs=2, fb_terms=3, max_df=1.0)), _bm25(None)
    queries = {"short": "apple", "long": "apple banana"}
    run = gated.search(queries, k=10)
    assert run["short"] == full.search({"short": "apple"}, k=10)["short"]
    assert run["long"] == plain.search({"long": "apple banana"}, k=10)["long"]
    assert gated.expansion("apple banana") == {"apple": 1.0, "banana": 1.0}
