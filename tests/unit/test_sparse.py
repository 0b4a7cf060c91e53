"""Learned sparse encoders (encoders/sparse.py) and indexes (indexes/sparse.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from pretriever.data import load_dataset
from pretriever.data.corpus import Corpus
from pretriever.encoders.sparse import SparseEncoder
from pretriever.errors import ConfigError
from pretriever.indexes.sparse import SeismicSparseIndex, SparseIndex
from pretriever.retrieval import load_index
from pretriever.types import Document


@cache
def inference_free() -> SparseEncoder:
    from tests.conftest import TINY_DOCS

    texts = [f"{d['title']} {d['text']}" for d in TINY_DOCS]
    return SparseEncoder("minilm", kind="inference-free", idf=texts, batch_size=4)


def random_rows(n: int, dims: int, seed: int, density: float = 0.05) -> scipy.sparse.csr_matrix:
    return scipy.sparse.random(n, dims, density=density, format="csr", dtype=np.float32,
                               random_state=np.random.default_rng(seed))


def test_exact_search_is_the_dense_matrix_product() -> None:
    docs, queries = random_rows(300, 500, 0), random_rows(12, 500, 1, 0.02)
    index = SparseIndex()
    index._install(docs, [f"d{i}" for i in range(300)])
    run = index.search_vectors([f"q{i}" for i in range(12)], queries, 20)
    product = (queries @ docs.T).toarray()
    for i in range(12):
        expected = np.argsort(-product[i], kind="stable")[:20]
        expected = [j for j in expected if product[i, j] > 0]
        assert list(run[f"q{i}"]) == [f"d{j}" for j in expected]
        assert list(run[f"q{i}"].values()) == pytest.approx(product[i, expected].tolist(), rel=1e-5)


def test_seismic_finds_the_exact_top_results_on_a_small_collection() -> None:
    docs, queries = random_rows(300, 500, 2), random_rows(12, 500, 3, 0.02)
    ids = [f"d{i}" for i in range(300)]
    exact, approx = SparseIndex(), SeismicSparseIndex(query_cut=50, heap_factor=1.0)
    exact._install(docs, ids)
    approx._install(docs, ids)
    qids = [f"q{i}" for i in range(12)]
    want, got = exact.search_vectors(qids, queries, 10), approx.search_vectors(qids, queries, 10)
    recall = np.mean([len(set(want[q]) & set(got[q])) / max(len(want[q]), 1) for q in qids])
    assert recall >= 0.9


def test_an_inference_free_query_runs_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers.sparse_encoder.modules import MLMTransformer

    encoder = inference_free()
    assert encoder.sparse_kind == "inference-free"

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("a query went through the MLM model")

    monkeypatch.setattr(MLMTransformer, "forward", no_forward)
    query = encoder.encode_queries(["solar electricity"])
    ids = encoder.tokenizer("solar electricity", add_special_tokens=False)["input_ids"]
    assert sorted(query.indices.tolist()) == sorted(set(ids))
    weights = encoder.model[0].sub_modules["query"][0].weight.detach().numpy()
    assert query.data.tolist() == pytest.approx(weights[query.indices].tolist())
    texts = ["solar electricity", "bread bread without yeast", "", "zzzz unknownword"]
    fast, through_st = encoder.encode_queries(texts), encoder._encode(texts, "query", False)
    assert (fast != through_st).nnz == 0 and fast.shape == through_st.shape  # the lookup is the model's


def test_a_saved_model_reloads_in_plain_sentence_transformers(tmp_path: Path) -> None:
    from sentence_transformers import SparseEncoder as STSparseEncoder

    encoder = inference_free()
    encoder.save(tmp_path / "model")
    plain = STSparseEncoder(str(tmp_path / "model"), device="cpu")
    texts = ["Photovoltaic panels convert sunlight.", "Bread without yeast."]
    ours = encoder.encode_documents(texts).toarray()
    theirs = plain.encode_document(texts, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    again = SparseEncoder(tmp_path / "model")
    assert again.sparse_kind == "inference-free" and again.spec()["weights"] == encoder.spec()["weights"]
    np.testing.assert_allclose(again.encode_queries(texts).toarray(), encoder.encode_queries(texts).toarray())


def test_index_round_trip_stats_and_updates(tiny: Path, tmp_path: Path) -> None:
    corpus = load_dataset(tiny).corpus
    index = SparseIndex(inference_free(), progress=False).build(corpus)
    stats = index.stats()
    assert stats["documents"] == 5 and stats["terms_per_document"] > 0 and stats["flops"] > 0
    index.add([Document("n1", "Geothermal plants tap heat below the ground.")])
    index.delete(["d2"])
    run = index.search({"q": "geothermal heat", "w": "wind turbines"}, k=3)
    assert next(iter(run["q"])) == "n1" and "d2" not in run["w"]
    index.save(tmp_path / "exact")
    again = load_index(tmp_path / "exact")  # the encoder (its IDF query side) is kept in the index
    assert type(again) is SparseIndex and again.search({"q": "geothermal heat"}, k=3)["q"] == run["q"]


def test_seismic_updates_round_trip(tmp_path: Path) -> None:
    """Seismic over random vectors of the encoder's size (an untrained model's dense expansions
    make Seismic's per-list summaries slow); added documents are searched exactly until compacted."""
    encoder = inference_free()
    dims = encoder.dimensions
    docs, queries = random_rows(200, dims, 4, 0.001), random_rows(5, dims, 5, 0.002)
    index = SeismicSparseIndex(encoder, query_cut=50, heap_factor=1.0)
    index._install(docs, [f"d{i}" for i in range(200)])
    index._spec = encoder.spec()
    index.apply_add(["n1"], {"indptr": np.array([0, len(queries[0].indices)]), "indices": queries[0].indices,
                             "data": queries[0].data * 10})
    index.delete(["d1"])
    qids = [f"q{i}" for i in range(5)]
    run = index.search_vectors(qids, queries, 5)
    assert next(iter(run["q0"])) == "n1" and all("d1" not in hits for hits in run.values())
    index.save(tmp_path / "seismic")  # saved as it searches: Seismic, the exact delta, the tombstone
    again = load_index(tmp_path / "seismic")
    assert type(again) is SeismicSparseIndex and len(again) == 200
    assert again.stats()["seismic_documents"] == 200 and again.search_vectors(qids, queries, 5) == run
    again.compact()  # Seismic rebuilt over every live document
    compacted = again.search_vectors(qids, queries, 5)
    assert again.stats()["seismic_documents"] == 200 == len(again)
    assert next(iter(compacted["q0"])) == "n1" and all("d1" not in hits for hits in compacted.values())


def test_bad_kinds_and_missing_idf_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown sparse encoder kind"):
        SparseEncoder("minilm", kind="dense")
    with pytest.raises(ConfigError, match="idf"):
        SparseEncoder("minilm", kind="inference-free")
    with pytest.raises(ConfigError, match="sparse encoder"):
        SparseIndex().build(Corpus.from_documents([Document("a", "b")]))


def test_index_sparse_on_the_command_line(tiny: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from pretriever.cli import main

    assert main(["index", "sparse", "--dataset", str(tiny), "--out", str(tmp_path / "sp"), "--quiet"]) == 0
    assert "inference-free" in capsys.readouterr().out
    assert main(["search", "--index", str(tmp_path / "sp"), "solar panels electricity", "-k", "1"]) == 0
    assert "d1" in capsys.readouterr().out
