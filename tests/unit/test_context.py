"""RAG context assembly: the budget is never exceeded, near-duplicates are dropped, the strongest
passages sit at both ends, and every citation points at its passage."""

from __future__ import annotations

import pytest

from pretriever.errors import ConfigError
from pretriever.retrieval.context import assemble, edges_order, token_counter


def words(text: str) -> int:
    return len(text.split())


TEXTS = {f"d{i}": f"passage {i} " + " ".join(f"w{i}x{j}" for j in range(10)) for i in range(1, 8)}
HITS = {f"d{i}": 10.0 - i for i in range(1, 8)}  # d1 best ... d7 worst


def test_edges_order_puts_the_best_at_both_ends() -> None:
    assert edges_order(6) == [0, 2, 4, 5, 3, 1]
    assert edges_order(1) == [0] and edges_order(0) == []


def test_strongest_at_the_ends_and_citations_point_at_their_passages() -> None:
    context = assemble(HITS, TEXTS, budget=10_000, count=words)
    assert [c.rank for c in context.citations] == [1, 3, 5, 7, 6, 4, 2]
    for c in context.citations:
        assert context.text[c.start:c.end] == f"[{c.doc_id}] " + TEXTS[c.doc_id]
    assert [c.rank for c in assemble(HITS, TEXTS, budget=10_000, count=words, order="rank").citations] == \
        list(range(1, 8))


@pytest.mark.parametrize("budget", [5, 13, 25, 40, 77, 1000])
def test_the_budget_is_never_exceeded_and_the_best_are_kept(budget: int) -> None:
    context = assemble(HITS, TEXTS, budget=budget, count=words)
    assert context.tokens == words(context.text) <= budget
    ranks = sorted(c.rank for c in context.citations)
    assert ranks == list(range(1, len(ranks) + 1))  # a prefix of the ranking
    assert context.citations  # the best passage, cut if it alone is too long
    assert len(context.citations) + len(context.over_budget) == len(HITS)


def test_near_duplicates_are_dropped_keeping_the_better_ranked() -> None:
    texts = dict(TEXTS)
    texts["d4"] = texts["d2"] + " extra"  # a near copy of d2, ranked lower
    context = assemble(HITS, texts, budget=10_000, count=words)
    assert context.dropped_duplicates == ["d4"]
    assert "d2" in {c.doc_id for c in context.citations}
    kept_all = assemble(HITS, texts, budget=10_000, count=words, max_overlap=1.0)
    assert kept_all.dropped_duplicates == []


def test_a_named_tokenizer_counts_the_budget(tmp_path) -> None:
    count = token_counter("minilm")
    context = assemble(HITS, TEXTS, budget=60, count=count)
    assert context.tokens == count(context.text) <= 60
    assert 0 < len(context.citations) < len(HITS)


def test_bad_input_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="budget must be at least 1"):
        assemble(HITS, TEXTS, budget=0, count=words)
    with pytest.raises(ConfigError, match="pass the corpus"):
        assemble({"nope": 1.0}, TEXTS, count=words)
    with pytest.raises(ConfigError, match="unknown order"):
        assemble(HITS, TEXTS, count=words, order="middle")
