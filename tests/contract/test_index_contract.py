"""One conformance suite for every Index implementation (the scikit-learn style contract)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from pretriever.data import load_dataset
from pretriever.errors import ConfigError, ManifestError, NotBuiltError
from pretriever.feedback import RM3, Rocchio
from pretriever.indexes import BM25Index, Index, search_one
from pretriever.indexes.ann import FaissIndex
from pretriever.indexes.dense import FlatIndex
from pretriever.indexes.late_interaction import MaxSimIndex
from pretriever.indexes.plaid import PlaidIndex
from pretriever.retrieval import Fusion, Pipeline, load_index


@cache
def colbert():  # one zero-shot ColBERT encoder for every late-interaction factory
    from pretriever.encoders.colbert import ColBERTEncoder

    return ColBERTEncoder("minilm", batch_size=4, backend="torch", precision="float32")


FACTORIES: dict[str, Callable[..., Index]] = {
    "bm25": lambda enc: BM25Index(progress=False),
    "bm25-robertson-nostem": lambda enc: BM25Index(method="robertson", stemmer="none", k1=0.9, b=0.4,
                                                   progress=False),
    "bm25-rm3": lambda enc: BM25Index(feedback=RM3(fb_docs=2, fb_terms=5, max_df=1.0), progress=False),
    "dense-flat": lambda enc: FlatIndex(enc, progress=False),
    "dense-flat-fp16": lambda enc: FlatIndex(enc, dtype="float16", chunk_rows=2, progress=False),
    "faiss-hnsw": lambda enc: FaissIndex(enc, progress=False),
    "faiss-flat": lambda enc: FaissIndex(enc, index_type="flat", progress=False),
    "faiss-hnsw-rocchio": lambda enc: FaissIndex(enc, feedback=Rocchio(fb_docs=2), progress=False),
    "maxsim-exact": lambda enc: MaxSimIndex(colbert(), progress=False),
    "plaid": lambda enc: PlaidIndex(colbert(), centroids=16, progress=False),
    "pipeline-bm25-dense-maxsim": lambda enc: Pipeline({"bm25": BM25Index(progress=False),
                                                        "dense": FlatIndex(enc, progress=False),
                                                        "colbert": PlaidIndex(colbert(), progress=False)}),
    "pipeline-wsum": lambda enc: Pipeline({"bm25": BM25Index(progress=False),
                                           "dense": FlatIndex(enc, progress=False)}),
    "pipeline-rrf": lambda enc: Pipeline({"bm25": BM25Index(progress=False),
                                          "dense": FaissIndex(enc, progress=False)}, Fusion("rrf")),
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest, minilm) -> Callable[[], Index]:
    return lambda: FACTORIES[request.param](minilm)


def test_is_an_index(make) -> None:
    assert isinstance(make(), Index)


def test_search_before_build_raises(make) -> None:
    with pytest.raises(NotBuiltError):
        make().search({"q": "x"})


def test_save_before_build_raises(make, tmp_path: Path) -> None:
    with pytest.raises(NotBuiltError):
        make().save(tmp_path / "i")


def test_build_returns_self_and_ranks(make, tiny: Path) -> None:
    ds = load_dataset(tiny)
    index = make()
    assert index.build(ds.corpus) is index
    run = index.search(ds.queries, k=3)
    assert set(run) == {"q1", "q2", "q3"}
    assert all(len(hits) <= 3 for hits in run.values())
    assert next(iter(sorted(run["q1"].items(), key=lambda kv: -kv[1])))[0] == "d1"
    hits = search_one(index, "bread yeast", k=2)
    assert [h.rank for h in hits] == [1, 2] and {h.doc_id for h in hits} <= {"d3", "d4"}


def test_k_validation_and_empty_queries(make, tiny: Path) -> None:
    index = make().build(load_dataset(tiny).corpus)
    assert index.search({}, k=5) == {}
    with pytest.raises(ConfigError):
        index.search({"q": "bread"}, k=0)
    assert len(index.search({"q": "electricity water bread"}, k=1000)["q"]) <= 5


def test_save_load_round_trip_identical(make, tiny: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny)
    index = make().build(ds.corpus)
    before = index.search(ds.queries, k=5)
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    assert type(again) is type(index)
    assert again.search(ds.queries, k=5) == before


def test_save_refuses_to_clobber(make, tiny: Path, tmp_path: Path) -> None:
    index = make().build(load_dataset(tiny).corpus)
    index.save(tmp_path / "idx")
    with pytest.raises(Exception, match="already exists"):
        index.save(tmp_path / "idx")
    index.save(tmp_path / "idx", overwrite=True)


def test_load_detects_corruption(make, tiny: Path, tmp_path: Path) -> None:
    make().build(load_dataset(tiny).corpus).save(tmp_path / "idx")
    victim = max((p for p in (tmp_path / "idx").rglob("*") if p.is_file() and p.suffix != ".json"),
                 key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x07")
    with pytest.raises(ManifestError, match="checksum"):
        load_index(tmp_path / "idx")


def test_params_are_in_the_manifest(make, tiny: Path, tmp_path: Path) -> None:
    import json

    index = make()
    index.build(load_dataset(tiny).corpus).save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == index.kind
    assert index.params().items() <= manifest["params"].items()
    assert manifest["provenance"]["corpus"]["documents"] == 5
    assert len(manifest["provenance"]["corpus"]["sha256"]) == 64


def test_bm25_returns_nothing_for_queries_without_known_terms(tiny: Path) -> None:
    ds = load_dataset(tiny)
    run = BM25Index(progress=False).build(ds.corpus).search(ds.queries, k=3)
    assert run["q3"] == {}  # no term in common: no results, not arbitrary ones
