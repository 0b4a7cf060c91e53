"""One conformance suite for every Index implementation (the scikit-learn style contract)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from pretriever.data import load_dataset
from pretriever.data.corpus import Corpus
from pretriever.errors import (
    ConfigError,
    DuplicateDocumentError,
    ManifestError,
    NotBuiltError,
    UnknownDocumentError,
)
from pretriever.feedback import RM3, Rocchio
from pretriever.indexes import BM25Index, Index, search_one
from pretriever.indexes.ann import FaissIndex
from pretriever.indexes.dense import FlatIndex
from pretriever.indexes.late_interaction import MaxSimIndex
from pretriever.indexes.plaid import PlaidIndex
from pretriever.indexes.sparse import SeismicSparseIndex, SparseIndex
from pretriever.retrieval import Fusion, Pipeline, load_index
from pretriever.types import Document


@cache
def colbert():  # one zero-shot ColBERT encoder for every late-interaction factory
    from pretriever.encoders.colbert import ColBERTEncoder

    return ColBERTEncoder("minilm", batch_size=4, backend="torch", precision="float32")


@cache
def sparse():  # an inference-free sparse encoder, its query IDF from the tiny corpus
    from pretriever.encoders.sparse import SparseEncoder
    from tests.conftest import TINY_DOCS

    texts = [f"{d['title']} {d['text']}" for d in TINY_DOCS]
    return SparseEncoder("minilm", kind="inference-free", idf=texts, batch_size=4)


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
    "sparse-inference-free": lambda enc: SparseIndex(sparse(), progress=False),
    "sparse-seismic": lambda enc: SeismicSparseIndex(sparse(), progress=False),
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


# -- updates: add, delete, upsert (indexes/updates.py) ------------------------------------------------
EXTRA = [Document("x1", "Geothermal plants tap the heat below the ground for electricity.", "Geothermal"),
         Document("x2", "Rye flour gives a dense, dark bread with a sour taste.", "Rye bread")]
UPDATE_QUERIES = {"q1": "how do solar panels make electricity", "q2": "bread without yeast",
                  "q4": "geothermal heat electricity", "q5": "dark rye bread", "q6": "wind turbines"}


def _updated(make, tiny: Path) -> tuple[Index, list[Document]]:
    """An index built on the tiny corpus plus x1, then, on the copy an update is applied to while
    the original goes on answering searches (``copy_for_update``; in place for FAISS): add d6 + x2,
    delete x1 and d3, upsert d2 with a new text. Returns the updated index and the documents it
    should now hold, in row order, after checking that the original searches as before."""
    docs = list(load_dataset(tiny).corpus)
    original = make().build(Corpus.from_documents([*docs, EXTRA[0]]))
    before = original.search(UPDATE_QUERIES, k=10)
    index = original.copy_for_update() or original
    d6 = Document("d6", "Tidal turbines convert the energy of the tides into electricity.", "Tides")
    index.add([d6, EXTRA[1]])
    index.delete(["x1", "d3"])
    new_d2 = Document("d2", "Wind turbines on hills turn moving air into electric power.", "Wind turbines")
    index.upsert([new_d2])
    if index is not original:
        assert original.search(UPDATE_QUERIES, k=10) == before and len(original) == 6 and "x1" in original
    by_id = {d.id: d for d in docs}
    expected = [by_id["d1"], by_id["d4"], by_id["d5"], d6, EXTRA[1], new_d2]
    return index, expected


def test_updates_match_a_rebuild(make, tiny: Path, tmp_path: Path) -> None:
    index, expected = _updated(make, tiny)
    assert len(index) == 6 and "x1" not in index and "d3" not in index and "x2" in index
    got = index.search(UPDATE_QUERIES, k=10)
    returned = {d for hits in got.values() for d in hits}
    assert returned <= {d.id for d in expected}  # deleted documents never come back
    assert next(iter(sorted(got["q5"].items(), key=lambda kv: -kv[1])))[0] == "x2"  # added: found
    assert max(got["q6"], key=got["q6"].get) == "d2"  # the upserted text is the one searched
    rebuilt = make().build(Corpus.from_documents(expected)).search(UPDATE_QUERIES, k=10)
    if index.exact_updates:
        for q in UPDATE_QUERIES:
            assert list(got[q]) == list(rebuilt[q]), q
            assert got[q] == pytest.approx(rebuilt[q], rel=1e-5, abs=1e-5), q
    else:  # approximate (HNSW, PLAID): the rebuild's best document first for all but one query
        best = [max(got[q], key=got[q].get) == max(rebuilt[q], key=rebuilt[q].get) for q in UPDATE_QUERIES]
        assert sum(best) >= len(UPDATE_QUERIES) - 1, got
    index.save(tmp_path / "idx")
    assert load_index(tmp_path / "idx").search(UPDATE_QUERIES, k=10) == got  # tombstones saved
    index.compact()
    assert len(index) == 6
    compacted = index.search(UPDATE_QUERIES, k=10)
    assert {q: list(h) for q, h in compacted.items()} == {q: list(h) for q, h in got.items()} \
        or not index.exact_updates


def test_update_ids_are_checked(make, tiny: Path) -> None:
    index = make().build(load_dataset(tiny).corpus)
    with pytest.raises(DuplicateDocumentError, match="d1"):
        index.add([Document("d1", "again")])
    with pytest.raises(DuplicateDocumentError, match="twice"):
        index.add([Document("n1", "a"), Document("n1", "b")])
    with pytest.raises(UnknownDocumentError, match="nope"):
        index.delete(["d2", "nope"])
    assert len(index) == 5 and "d2" in index  # a refused update changes nothing
