"""A run saved by ``evaluate --save-run`` scores the same in trec_eval (pytrec_eval, through
ir_measures) as in pretriever, on the real collections: BM25 runs hold many exactly and nearly tied
scores, which the file must rank as pretriever ranked them when it scored the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretriever.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_trec_eval_reads_the_saved_run_as_pretriever_scored_it(name: str, real_data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    ir_measures = pytest.importorskip("ir_measures")
    run_file = tmp_path / f"{name}-bm25.trec"
    assert main(["evaluate", "--dataset", name, "--retriever", "bm25", "--metrics", "nDCG@10", "Recall@100",
                 "--save-run", str(run_file), "--json", "--quiet"]) == 0
    ours = json.loads(capsys.readouterr().out)["metrics"]
    rows = (real_data / name / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]  # BEIR
    qrels = [ir_measures.Qrel(q, d, int(g)) for q, d, g in (row.split("\t") for row in rows if row)]
    measures = [ir_measures.parse_measure("nDCG@10"), ir_measures.parse_measure("R@100")]
    theirs = ir_measures.calc_aggregate(measures, qrels, ir_measures.read_trec_run(str(run_file)))
    assert round(ours["nDCG@10"], 4) == round(theirs[measures[0]], 4)
    assert round(ours["Recall@100"], 4) == round(theirs[measures[1]], 4)
    assert ours["nDCG@10"] == pytest.approx(theirs[measures[0]], abs=1e-9)
    assert ours["Recall@100"] == pytest.approx(theirs[measures[1]], abs=1e-9)
