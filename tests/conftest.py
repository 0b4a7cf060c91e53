"""Shared fixtures: where the real collections live, and tiny datasets built on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
DEFAULT_DATA = REPO.parent / "shared" / "datasets"


def data_root() -> Path:
    value = os.environ.get("PRETRIEVER_DATA")
    return Path(value) if value else DEFAULT_DATA


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real BEIR collections; CI must have it, elsewhere the test is skipped."""
    root = data_root()
    if not (root / "scifact" / "corpus.jsonl").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real collections at {root} (set PRETRIEVER_DATA)")
        pytest.skip(f"real collections not found at {root}; set PRETRIEVER_DATA")
    return root


@pytest.fixture(autouse=True)
def _data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees PRETRIEVER_DATA pointing at the real collections unless it overrides it."""
    monkeypatch.setenv("PRETRIEVER_DATA", str(data_root()))


def write_beir(folder: Path, docs: list[dict], queries: list[dict], qrels: list[tuple],
               split: str = "test") -> Path:
    """Write a small BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
    import json

    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), "utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), "utf-8")
    rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows, "utf-8")
    return folder


TINY_DOCS = [
    {"_id": "d1", "title": "Solar power", "text": "Photovoltaic panels convert sunlight into electricity."},
    {"_id": "d2", "title": "Wind power", "text": "Turbines turn the energy of wind into electricity."},
    {"_id": "d3", "title": "Bread", "text": "Flour, water, salt and yeast make a simple bread."},
    {"_id": "d4", "title": "Sourdough", "text": "A sourdough starter leavens bread without yeast."},
    {"_id": "d5", "title": "", "text": "Hydroelectric dams generate electricity from water."},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "how do solar panels make electricity"},
    {"_id": "q2", "text": "bread without yeast"},
    {"_id": "q3", "text": "zzzz unknownword"},
]
TINY_QRELS = [("q1", "d1", 2), ("q1", "d5", 1), ("q2", "d4", 1), ("q2", "d3", 0), ("q3", "d2", 1)]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A valid five-document BEIR folder."""
    return write_beir(tmp_path / "tiny", TINY_DOCS, TINY_QUERIES, TINY_QRELS)


@pytest.fixture(scope="session")
def minilm():
    """One bundled MiniLM encoder (torch fp32, the reference path) shared by every test."""
    from pretriever.encoders.dense import DenseEncoder

    return DenseEncoder("minilm", batch_size=4, backend="torch", precision="float32")


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder trained for a few steps on the tiny collection (train split), saved."""
    from pretriever.training.loop import LoopConfig
    from pretriever.training.negatives.static import NegativeConfig
    from pretriever.training.reranker import RerankerConfig, train_reranker

    root = tmp_path_factory.mktemp("tiny-reranker")
    data = write_beir(root / "data", TINY_DOCS, TINY_QUERIES, TINY_QRELS, split="train")
    config = RerankerConfig(
        dataset=str(data), out=str(root / "model"), dev_fraction=0.0, max_length=64, batch_size=2,
        negatives=NegativeConfig(hard=2, depth=5), precision="float32",
        loop=LoopConfig(epochs=8, lr=1e-4, warmup_ratio=0.0, checkpoint_steps=100),
    )
    return train_reranker(config, progress=False).folder
