"""Metrics by name, honest handling of missing queries, ties, and seeded significance tests."""

import math

import numpy as np
import pytest

from pretriever.errors import ConfigError
from pretriever.evaluation import (
    compare,
    evaluate,
    format_table,
    parse_metric,
    randomization_test,
    t_test,
    to_json,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("nDCG@10", "nDCG@10"), ("ndcg@10", "nDCG@10"), ("R@100", "Recall@100"),
     ("recall@100", "Recall@100"), ("MRR@10", "MRR@10"), ("rr@10", "MRR@10"),
     ("MAP@100", "MAP@100"), ("map", "MAP"), ("P@10", "P@10"), ("precision@5", "P@5")],
)
def test_metric_names(given: str, canonical: str) -> None:
    assert parse_metric(given)[0] == canonical


@pytest.mark.parametrize("bad", ["ndgc@10", "nDCG", "P", "nDCG@0", "", "MAP@x"])
def test_unknown_metric_lists_valid_ones(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_metric(bad)


def _dcg(gains: list[int]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def test_values_match_the_definitions() -> None:
    qrels = {"q": {"a": 2, "b": 1, "c": 0, "z": 1}}
    run = {"q": {"c": 0.9, "a": 0.8, "x": 0.7, "b": 0.6}}
    ev = evaluate(qrels, run, ["nDCG@3", "Recall@2", "MRR@10", "P@4", "MAP@10"])
    # linear gain, as trec_eval's ndcg_cut (and so BEIR / pytrec_eval) computes it
    expected_ndcg = _dcg([0, 2, 0]) / _dcg([2, 1, 1])
    assert ev.metrics["nDCG@3"] == pytest.approx(expected_ndcg)
    assert ev.metrics["Recall@2"] == pytest.approx(1 / 3)
    assert ev.metrics["MRR@10"] == pytest.approx(1 / 2)
    assert ev.metrics["P@4"] == pytest.approx(2 / 4)
    assert ev.metrics["MAP@10"] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_missing_queries_score_zero_and_extra_are_ignored() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}, "other": {"a": 1.0}}
    ev = evaluate(qrels, run, ["nDCG@10"])
    assert ev.per_query == {"q1": {"nDCG@10": 1.0}, "q2": {"nDCG@10": 0.0}}
    assert ev.metrics["nDCG@10"] == pytest.approx(0.5)
    assert ev.missing == ("q2",) and ev.ignored == ("other",)
    assert any("score 0" in n for n in ev.notes)


def test_no_overlap_is_an_error_that_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="--split"):
        evaluate({"q1": {"a": 1}}, {"x": {"a": 1.0}}, ["nDCG@10"])


def test_ties_break_on_doc_id_not_insertion_order() -> None:
    for relevant, reciprocal_rank in (("b", 1.0), ("a", 0.5)):  # trec_eval's rule: b before a
        qrels = {"q": {relevant: 1}}
        forward = evaluate(qrels, {"q": {"a": 1.0, "b": 1.0}}, ["MRR@10"])
        backward = evaluate(qrels, {"q": {"b": 1.0, "a": 1.0}}, ["MRR@10"])
        assert forward.metrics == backward.metrics == {"MRR@10": reciprocal_rank}


def test_single_metric_and_duplicate_metric() -> None:
    ev = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["nDCG@10", "ndcg@10"])
    assert ev.metrics == {"nDCG@10": 1.0}


def test_randomization_test_is_seeded_and_sensible() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200)
    b = a + rng.normal(0.01, 0.1, 200)
    p1 = randomization_test(a, b, seed=7)
    assert p1 == randomization_test(a, b, seed=7)
    assert randomization_test(a, a + 0.2, seed=7) < 0.001
    assert randomization_test(a, a, seed=7) == 1.0
    assert 0 < t_test(a, b) < 1 and t_test(a, a) == 1.0


def _two_evals():
    qrels = {f"q{i}": {"a": 1} for i in range(30)}
    good = {f"q{i}": {"a": 2.0, "b": 1.0} for i in range(30)}
    bad = {f"q{i}": {"a": 1.0, "b": 2.0} for i in range(30)}
    return evaluate(qrels, bad, ["MRR@10"], name="bad"), evaluate(qrels, good, ["MRR@10"], name="good")


def test_compare_marks_significance_in_table_and_json() -> None:
    base, better = _two_evals()
    comparisons = compare([base, better], "MRR@10", seed=1)
    assert len(comparisons) == 1 and comparisons[0].significant
    assert comparisons[0].delta == pytest.approx(0.5)
    table = format_table([base, better], comparisons)
    assert "1.0000*" in table and "against 'bad'" in table
    data = to_json([base, better], comparisons)
    assert data["significance"][0]["significant"] is True
    assert [r["name"] for r in data["runs"]] == ["bad", "good"]


def test_compare_refuses_different_query_sets() -> None:
    a = evaluate({"q1": {"a": 1}}, {"q1": {"a": 1.0}}, ["MRR@10"], name="a")
    b = evaluate({"q2": {"a": 1}}, {"q2": {"a": 1.0}}, ["MRR@10"], name="b")
    with pytest.raises(ConfigError, match="different queries"):
        compare([a, b], "MRR@10")


def test_single_run_json_has_metrics_mapping() -> None:
    ev = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["nDCG@10", "P@1"])
    data = to_json([ev], per_query=True, dataset="x")
    assert data["metrics"] == {"nDCG@10": 1.0, "P@1": 1.0}
    assert data["per_query"] == {"q": {"nDCG@10": 1.0, "P@1": 1.0}}
    assert data["dataset"] == "x"
