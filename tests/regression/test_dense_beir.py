"""Dense MiniLM and BM25+MiniLM hybrid reproduce the published / measured figures on real data.

The corpus encodings are the slow part (minutes on two CPU cores), so each corpus is encoded
once per test session and shared by every test here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretriever.data import load_dataset
from pretriever.evaluation import evaluate
from pretriever.indexes import BM25Index
from pretriever.indexes.ann import FaissIndex
from pretriever.indexes.dense import FlatIndex
from pretriever.retrieval import Pipeline

EXPECTED = json.loads((Path(__file__).parent / "expected.json").read_text())

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def built(real_data: Path):
    """name -> (dataset, dense FlatIndex, BM25Index); each corpus encoded once per session."""
    from pretriever.encoders.dense import DenseEncoder

    encoder = DenseEncoder("minilm", batch_size=32)
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            dataset = load_dataset(real_data / name)
            dense = FlatIndex(encoder, progress=False).build(dataset.corpus)
            cache[name] = (dataset, dense, BM25Index(progress=False).build(dataset.corpus))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_dense_and_hybrid(name: str, built) -> None:
    dataset, dense, bm25 = built(name)
    queries, qrels = dataset.split_queries("test"), dataset.qrels("test")
    ev = evaluate(qrels, dense.search(queries, k=100), ["nDCG@10"])
    spec = EXPECTED["dense"][name]["nDCG@10"]
    assert ev.metrics["nDCG@10"] == pytest.approx(spec["target"], abs=spec["tolerance"])
    hybrid = Pipeline({"bm25": bm25, "dense": dense}).search(queries, k=100)
    score = evaluate(qrels, hybrid, ["nDCG@10"]).metrics["nDCG@10"]
    expected = EXPECTED["hybrid"][name]["nDCG@10"]
    assert score >= expected["min"], f"{name} hybrid {score:.4f}"
    assert score == pytest.approx(expected["measured"], abs=0.002)  # the auto backend: bf16 noise


def test_hnsw_keeps_recall_of_exact_search(built, tmp_path: Path) -> None:
    dataset, dense, _ = built("scifact")
    queries, qrels = dataset.split_queries("test"), dataset.qrels("test")
    exact = evaluate(qrels, dense.search(queries, k=100), ["Recall@100"]).metrics["Recall@100"]
    hnsw = FaissIndex.from_vectors(dense.vectors, dataset.corpus, dense.get_encoder())
    vectors = dense.get_encoder().encode_queries(list(queries.values()))
    approx_run = hnsw.search_vectors(list(queries), vectors, 100)
    approx = evaluate(qrels, approx_run, ["Recall@100"]).metrics["Recall@100"]
    assert approx >= EXPECTED["hnsw"]["scifact"]["Recall@100_ratio_to_exact"]["min"] * exact
    hnsw.save(tmp_path / "hnsw")
    again = FaissIndex.load(tmp_path / "hnsw", encoder=dense.get_encoder())
    assert again.search_vectors(list(queries), vectors, 100) == approx_run
