"""BM25 reproduces the published figures on the real SciFact and NFCorpus test splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretriever.data import load_dataset
from pretriever.evaluation import evaluate
from pretriever.indexes import BM25Index
from pretriever.retrieval import load_index

EXPECTED = json.loads((Path(__file__).parent / "expected.json").read_text())["bm25"]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bm25_reaches_published_ndcg(name: str, real_data: Path, tmp_path: Path) -> None:
    dataset = load_dataset(real_data / name)
    queries = dataset.split_queries("test")
    index = BM25Index(progress=False).build(dataset.corpus)
    run = index.search(queries, k=100)
    ev = evaluate(dataset.qrels("test"), run, ["nDCG@10", "Recall@100"])
    floor = EXPECTED[name]["nDCG@10"]["min"]
    assert ev.metrics["nDCG@10"] >= floor, f"{name}: {ev.metrics['nDCG@10']:.4f} < {floor}"
    for metric, spec in EXPECTED[name].items():
        assert ev.metrics[metric] == pytest.approx(spec["measured"], abs=5e-4)
    index.save(tmp_path / "idx")
    assert load_index(tmp_path / "idx").search(queries, k=100) == run
