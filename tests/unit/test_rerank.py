"""Cross-encoder reranking on tiny data: scores, the rerank stage, persistence, backends, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pretriever.cli import main
from pretriever.data import load_dataset
from pretriever.encoders.cross import Reranker, rerank_scores
from pretriever.errors import ConfigError
from pretriever.evaluation import evaluate
from pretriever.indexes import BM25Index
from pretriever.retrieval import Pipeline, load_index
from pretriever.runs import ranked, read_run, write_run
from pretriever.training.curriculum import curriculum_weight, group_easiness


@pytest.fixture(scope="module")
def reranker(tiny_reranker: Path) -> Reranker:
    return Reranker.load(tiny_reranker, backend="torch", precision="float32", batch_size=2)


def _first_stage(tiny: Path) -> tuple[dict, dict, object]:
    ds = load_dataset(tiny)
    run = BM25Index(progress=False).build(ds.corpus).search(ds.queries, k=5)
    run["q3"] = {d: 0.0 for d in ds.corpus.ids}  # BM25 finds nothing for q3: give it every doc
    return run, ds.queries, ds.corpus.text_map()


def test_trained_reranker_ranks_the_relevant_document_first(reranker: Reranker, tiny: Path) -> None:
    run, queries, texts = _first_stage(tiny)
    reranked = reranker.rerank(run, queries, texts)
    assert max(reranked["q1"], key=reranked["q1"].get) == "d1"
    assert max(reranked["q2"], key=reranked["q2"].get) == "d4"
    assert reranker.trained and not Reranker("minilm").trained


def test_reranking_changes_order_never_the_set(reranker: Reranker, tiny: Path) -> None:
    run, queries, texts = _first_stage(tiny)
    for depth in (1, 2, 3, 100):
        reranked = reranker.rerank(run, queries, texts, depth=depth)
        assert {q: set(d) for q, d in reranked.items()} == {q: set(d) for q, d in run.items()}
        for qid, first in run.items():
            order = [h.doc_id for h in ranked(first)]
            tail = order[depth:]
            new = [h.doc_id for h in ranked(reranked[qid])]
            assert new[len(new) - len(tail):] == tail  # below the depth: first-stage order kept
            assert set(new[: min(depth, len(order))]) == set(order[:depth])


def test_scores_are_deterministic_and_independent_of_batch_size(tiny_reranker: Path, tiny: Path) -> None:
    run, queries, texts = _first_stage(tiny)
    pairs = [(queries[q], texts[d]) for q in run for d in run[q]]
    one = Reranker.load(tiny_reranker, backend="torch", precision="float32", batch_size=1).score(pairs)
    many = Reranker.load(tiny_reranker, backend="torch", precision="float32", batch_size=7).score(pairs)
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(many, Reranker.load(tiny_reranker, backend="torch", precision="float32",
                                                   batch_size=7).score(pairs), rtol=0, atol=1e-6)


def test_saved_reranker_reloads_with_identical_scores(reranker: Reranker, tiny: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    run, queries, texts = _first_stage(tiny)
    pairs = [(queries[q], texts[d]) for q in run for d in run[q]]
    reranker.save(tmp_path / "again")
    again = Reranker.load(tmp_path / "again", backend="torch", precision="float32")
    # same weights, same scores (within float32 rounding: kernels may differ with memory layout)
    np.testing.assert_allclose(reranker.score(pairs), again.score(pairs), rtol=0, atol=1e-6)
    plain = CrossEncoder(str(tmp_path / "again"), device="cpu")  # plain sentence-transformers
    logits = plain.predict(pairs, activation_fn=__import__("torch").nn.Identity())
    np.testing.assert_allclose(logits, again.score(pairs), atol=1e-5)
    manifest = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert manifest["kind"] == "encoder.cross" and manifest["params"]["max_length"] == 64


@pytest.mark.slow
def test_optimised_reranker_ranks_like_torch(tiny_reranker: Path, tiny: Path, tmp_path: Path) -> None:
    from pretriever.optimize import optimize

    ds = load_dataset(tiny)
    report = optimize(tiny_reranker, ds.corpus, out=tmp_path / "int8", calibration=3, check=2,
                      min_quality=-1.0)
    assert report.measure == "score correlation"
    int8 = Reranker.load(tmp_path / "int8")  # auto: the stored int8 model
    assert int8.resolved == ("openvino", "int8")
    _assert_ffn_outputs_stay_float(tmp_path / "int8")
    torch_fp32 = Reranker.load(tiny_reranker, backend="torch", precision="float32")
    for qid, text in ds.queries.items():
        pairs = [(text, ds.corpus.text_map()[d]) for d in ds.corpus.ids]
        fast, exact = int8.score(pairs), torch_fp32.score(pairs)
        # same order for every two documents torch separates by more than int8's rounding
        separated = [(i, j) for i in range(len(pairs)) for j in range(len(pairs))
                     if exact[i] - exact[j] > 0.05]
        assert separated and all(fast[i] > fast[j] for i, j in separated), qid
    bf16 = Reranker.load(tiny_reranker, backend="openvino", precision="bfloat16")
    pairs = [(ds.queries["q1"], t) for t in ds.corpus.contents()]
    np.testing.assert_allclose(bf16.score(pairs), torch_fp32.score(pairs), atol=0.05)


def _assert_ffn_outputs_stay_float(folder: Path) -> None:
    """A reranker's int8 model keeps the FFN output projections unquantised (the manifest says so
    and the graph agrees), while the other projections read quantised activations."""
    import re

    import openvino

    from pretriever.optimize import CROSS_FLOAT_OPS

    manifest = json.loads((folder / "openvino" / "manifest.json").read_text())
    assert manifest["params"]["float_ops"] == list(CROSS_FLOAT_OPS) and manifest["params"]["float_ops_bf16"]
    graph = openvino.Core().read_model(str(folder / "openvino" / "openvino_model.xml"))
    fed_by_quantizer = {}
    for op in graph.get_ordered_ops():
        if op.get_type_name() == "MatMul" and re.search(r"layer\.\d+\.", op.get_friendly_name()):
            producers = {op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())}
            fed_by_quantizer[op.get_friendly_name()] = "FakeQuantize" in producers
    ffn = [name for name in fed_by_quantizer if re.search(r"layer\.\d+\.output\.dense", name)]
    assert ffn and not any(fed_by_quantizer[name] for name in ffn)
    assert any(quantised for name, quantised in fed_by_quantizer.items() if name not in ffn)


def test_interpolation_mixes_min_max_scores() -> None:
    first = {"q": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}}
    rescored = {"q": {"a": 0.0, "b": 1.0, "c": 2.0}}
    alone = rerank_scores(first, rescored)
    assert sorted(alone["q"], key=alone["q"].get, reverse=True) == ["c", "b", "a", "d"]
    kept = rerank_scores(first, rescored, interpolation=0.0)
    assert sorted(kept["q"], key=kept["q"].get, reverse=True) == ["a", "b", "c", "d"]
    with pytest.raises(ConfigError):
        rerank_scores(first, rescored, interpolation=1.5)


def test_curriculum_weights_follow_the_schedule() -> None:
    easy = group_easiness(1, [None, None])  # positive ranked first, negatives not retrieved
    hard = group_easiness(None, [1, 1])  # positive missed, negatives ranked first
    assert easy == 1.0 and hard == 0.0
    middle = group_easiness(2, [4])
    assert middle == pytest.approx((0.5 + 0.75) / 2)
    assert [curriculum_weight(hard, t, 2.0) for t in (0.0, 0.5, 1.0, 2.0, 3.0)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert curriculum_weight(middle, 0.0, 1.0) == middle and curriculum_weight(easy, 0.3, 1.0) == 1.0
    assert curriculum_weight(hard, 0.0, 0.0) == 1.0  # no annealing: uniform from the start


def test_pipeline_rerank_stage_saves_and_loads(reranker: Reranker, tiny: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny)
    pipeline = Pipeline({"bm25": BM25Index(progress=False)}, reranker=reranker, rerank_depth=3)
    pipeline.build(ds.corpus)
    before = pipeline.search(ds.queries, k=5)
    first = pipeline.first_stage(ds.queries, k=5)
    assert {q: set(d) for q, d in before.items()} == {q: set(d) for q, d in first.items()}
    pipeline.save(tmp_path / "p")
    again = load_index(tmp_path / "p")
    assert again.search(ds.queries, k=5) == before
    params = json.loads((tmp_path / "p" / "manifest.json").read_text())["params"]
    assert params["rerank"]["depth"] == 3 and params["rerank"]["reranker"]["kind"] == "encoder.cross"
    with pytest.raises(ConfigError, match="test split"):
        again.tune_interpolation(ds.qrels("test"), ds.split_queries("test"), split="test")
    qrels, queries = ds.qrels("test"), ds.split_queries("test")
    score = again.tune_interpolation(qrels, queries, split="dev")
    # the score it reports is the tuned pipeline's own, and no weight of the grid does better
    assert score == pytest.approx(evaluate(qrels, again.search(queries, k=3), ["nDCG@10"]).metrics["nDCG@10"])
    for weight in (0.0, 0.5, 1.0):
        again.interpolation = weight
        assert evaluate(qrels, again.search(queries, k=3), ["nDCG@10"]).metrics["nDCG@10"] <= score + 1e-12


def test_cli_rerank_and_score(tiny_reranker: Path, tiny: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    run, _, _ = _first_stage(tiny)
    write_run(tmp_path / "first.trec", run, name="bm25")
    assert main(["rerank", "-d", str(tiny), "--first-stage", str(tmp_path / "first.trec"), "--reranker",
                 str(tiny_reranker), "--out", str(tmp_path / "reranked.trec"), "--depth", "2",
                 "--backend", "torch", "--precision", "float32"]) == 0
    reranked, name = read_run(tmp_path / "reranked.trec")
    assert name == "bm25+rerank" and {q: set(d) for q, d in reranked.items()} == {
        q: set(d) for q, d in run.items()}
    assert main(["score", "-d", str(tiny), "--first-stage", str(tmp_path / "first.trec"), "--reranker",
                 str(tiny_reranker), "--out", str(tmp_path / "teacher.trec"), "--depth", "2",
                 "--backend", "torch", "--precision", "float32"]) == 0
    assert main(["score", "-d", str(tiny), "--first-stage", str(tmp_path / "first.trec"), "--reranker",
                 str(tiny_reranker), "--out", str(tmp_path / "teacher.trec")]) == 1  # exists: --overwrite
    teacher, _ = read_run(tmp_path / "teacher.trec")
    assert all(len(docs) == min(2, len(run[q])) for q, docs in teacher.items())
    capsys.readouterr()
    assert main(["evaluate", "-d", str(tiny), "-r", "bm25", "--reranker", str(tiny_reranker), "--json",
                 "--backend", "torch", "--precision", "float32"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [e["name"] for e in out["runs"]]
    assert names == ["bm25", "bm25 > rerank"]


@pytest.mark.slow
def test_cli_index_rerank_pipeline(tiny_reranker: Path, tiny: Path, tmp_path: Path) -> None:
    stage = ["index", "rerank", "-d", str(tiny), "--first-stage", "bm25", "--reranker", str(tiny_reranker)]
    assert main([*stage, "--out", str(tmp_path / "p"), "--depth", "4"]) == 0
    assert main(["evaluate", "-d", str(tiny), "-r", str(tmp_path / "p")]) == 0
    assert main([*stage, "--out", str(tmp_path / "q"), "--tune-on", "test"]) == 2


def test_reranker_errors_teach(tiny: Path, tmp_path: Path, reranker: Reranker) -> None:
    with pytest.raises(ConfigError, match="not among the given queries"):
        reranker.score_run({"nope": {"d1": 1.0}}, {"q1": "x"}, {"d1": "y"})
    with pytest.raises(ConfigError, match="not in the corpus"):
        reranker.score_run({"q1": {"zz": 1.0}}, {"q1": "x"}, {"d1": "y"})
    with pytest.raises(Exception, match="not a cross-encoder folder"):
        Reranker.load(tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        Reranker("minilm", batch_size=0)


def test_tuned_interpolation_is_never_worse_than_either_stage(reranker: Reranker, tiny: Path,
                                                             tmp_path: Path) -> None:
    from pretriever.training.reranker import tune_interpolation

    ds = load_dataset(tiny)
    run, queries, texts = _first_stage(tiny)
    picked = tune_interpolation(reranker, run, queries, ds.qrels("test"), texts, depth=5)
    assert picked["interpolated"] >= max(picked["first_stage"], picked["reranked"]) - 1e-12
    assert 0.0 <= picked["interpolation"] <= 1.0
    tuned = Reranker.load(reranker.source, backend="torch", precision="float32")
    tuned.interpolation = picked["interpolation"]
    tuned.save(tmp_path / "tuned")
    again = Reranker.load(tmp_path / "tuned")
    assert again.interpolation == picked["interpolation"]
    assert Pipeline({"bm25": BM25Index(progress=False)}, reranker=again).interpolation == again.interpolation
