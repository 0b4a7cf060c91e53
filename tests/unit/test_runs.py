"""TREC run files, and the rank order trec_eval reads them in (score, then doc id, both descending)."""

from pathlib import Path

import pytest

from pretriever.runs import ranked, read_run, sort_run, write_run


def test_ties_break_on_doc_id_as_trec_eval_does() -> None:
    hits = ranked({"b": 1.0, "a": 1.0, "c": 2.0, "d": 0.5})
    assert [h.doc_id for h in hits] == ["c", "b", "a", "d"]
    assert [h.rank for h in hits] == [1, 2, 3, 4]


def test_trec_eval_reads_a_saved_run_in_the_ranking_pretriever_scores(tmp_path: Path) -> None:
    """Ties and near-ties (equal to six digits) in memory; ir_measures (pytrec_eval, trec_eval's
    code) must rank the saved file exactly as pretriever ranked the run it scored."""
    ir_measures = pytest.importorskip("ir_measures")
    from pretriever.evaluation import evaluate

    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0000001, "d": 1.0000002, "e": 0.5}}
    for relevant in "abcde":
        qrels = {"q": {relevant: 1}}
        path = write_run(tmp_path / f"{relevant}.trec", run)
        ndcg, rr = ir_measures.parse_measure("nDCG@1"), ir_measures.parse_measure("RR")
        theirs = ir_measures.calc_aggregate([ndcg, rr], qrels, ir_measures.read_trec_run(str(path)))
        ours = evaluate(qrels, run, ["nDCG@1", "MRR"]).metrics
        assert (ours["nDCG@1"], ours["MRR"]) == pytest.approx((theirs[ndcg], theirs[rr]), abs=1e-12)


def test_round_trip_and_name(tmp_path: Path) -> None:
    run = {"q1": {"b": 1.0, "a": 1.0, "c": 0.25}, "q2": {"x": -1.5}}
    path = write_run(tmp_path / "r.trec", run, name="my-run")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 1.0 my-run"
    assert lines[1] == "q1 Q0 a 2 1.0 my-run"
    again, name = read_run(path)
    assert again == run and name == "my-run"


def test_scores_are_written_at_full_precision(tmp_path: Path) -> None:
    run = {"q": {"a": 12.345678901234567, "b": 12.345678901234566, "c": 1e-300}}
    again, _ = read_run(write_run(tmp_path / "r.trec", run))
    assert again == run


def test_write_cuts_at_k(tmp_path: Path) -> None:
    path = write_run(tmp_path / "r.trec", {"q": {"a": 3, "b": 2, "c": 1}}, k=2)
    assert len(path.read_text().splitlines()) == 2
    assert sort_run({"q": {"a": 1, "b": 2}}, k=1) == {"q": {"b": 2}}


def test_bad_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_run(tmp_path / "r.trec", {"q": {"a": 1.0}}, name="two words")
