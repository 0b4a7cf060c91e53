"""Fusion (over ranx), weight tuning, and exact dense search helpers."""

from __future__ import annotations

import numpy as np
import pytest

from pretriever.errors import ConfigError
from pretriever.indexes.dense import exact_search, top_k
from pretriever.retrieval import Fusion, Pipeline, fuse, tune_weights

A = {"q1": {"x": 3.0, "y": 1.0, "w": 2.0}, "q2": {}}
B = {"q1": {"y": 0.9, "z": 0.1}, "q3": {"z": 1.0}}


def test_wsum_min_max_matches_the_definition() -> None:
    fused = fuse([A, B], Fusion("wsum", "min-max", (0.25, 0.75)))
    # A normalised: x 1, w 0.5, y 0; B normalised: y 1, z 0
    assert fused["q1"] == pytest.approx({"x": 0.25, "w": 0.125, "y": 0.75, "z": 0.0})
    assert fused["q2"] == {} and set(fused) == {"q1", "q2", "q3"}


def test_min_max_wsum_is_ranx_to_the_last_bit() -> None:
    """The default fusion is computed without ranx (it is ~20x faster per query); it must give
    exactly ranx's scores: random runs with ties, one-hit runs, missing queries, 2 and 3 runs."""
    from ranx import Run as RanxRun
    from ranx import fuse as ranx_fuse

    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(40)]
    for trial in range(20):
        n_runs = 2 + trial % 2
        runs = []
        for _ in range(n_runs):
            run = {}
            for q in range(8):
                size = int(rng.integers(0, 15)) if q else 1
                picked = rng.choice(docs, size=size, replace=False)
                run[f"q{q}"] = {d: float(np.float32(rng.choice([0.5, 1.0, rng.normal()]))) for d in picked}
            runs.append(run)
        weights = tuple(float(w) for w in rng.dirichlet(np.ones(n_runs)))
        ours = fuse(runs, Fusion("wsum", "min-max", weights))
        queries = sorted({q for r in runs for q in r})
        padded = [RanxRun({q: r.get(q, {}) for q in queries}) for r in runs if any(r.values())]
        theirs = ranx_fuse(padded, norm="min-max", method="wsum", params={"weights": list(weights)}).to_dict()
        assert {q: h for q, h in ours.items() if h} == {q: h for q, h in theirs.items() if h}


def test_rrf_matches_the_definition() -> None:
    fused = fuse([A, B], Fusion("rrf", rrf_k=60))
    assert fused["q1"]["y"] == pytest.approx(1 / (60 + 3) + 1 / (60 + 1))
    assert fused["q1"]["x"] == pytest.approx(1 / 61)


def test_cut_at_k_and_single_or_empty_runs() -> None:
    assert list(fuse([A, B], k=2)["q1"]) == ["y", "x"]  # 0.5 each: the tie breaks on doc id, as trec_eval
    assert fuse([A, {"q1": {}}])["q1"] == A["q1"]  # an empty run contributes nothing
    assert fuse([{}, {}]) == {}


def test_invalid_configurations() -> None:
    with pytest.raises(ConfigError):
        Fusion("sum")
    with pytest.raises(ConfigError):
        Fusion("wsum", "l2")
    with pytest.raises(ConfigError):
        fuse([A, B], Fusion(weights=(1.0,)))
    with pytest.raises(ConfigError):
        Fusion(weights=(-1.0, 2.0))


def test_tuning_finds_the_better_weighting() -> None:
    lexical = {"q1": {"a": 3.0, "b": 2.0, "r": 1.0}}
    semantic = {"q1": {"r": 3.0, "b": 2.5, "a": 1.0}}  # at 0.5 / 0.5, b leads; only semantic weight lifts r
    fusion, score = tune_weights({"q1": {"r": 1}}, [lexical, semantic], step=0.25)
    assert fusion.weights is not None and fusion.weights[1] > fusion.weights[0]
    assert score == pytest.approx(1.0)


def test_pipeline_refuses_tuning_on_test() -> None:
    from pretriever.indexes import BM25Index

    with pytest.raises(ConfigError, match="test split"):
        Pipeline({"bm25": BM25Index()}).tune({}, {}, split="test")


def test_exact_search_equals_brute_force_whatever_the_chunk() -> None:
    rng = np.random.default_rng(3)
    docs = rng.standard_normal((101, 8)).astype(np.float32)
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    full = queries @ docs.T
    expected = np.argsort(-full, axis=1)[:, :10]
    for chunk in (1, 7, 50, 101, 1000):
        idx, val = exact_search(queries, docs, 10, chunk_rows=chunk)
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_allclose(val, np.take_along_axis(full, expected, axis=1), rtol=1e-5)
    idx, _ = top_k(full, 500)
    assert idx.shape == (4, 101)
