"""The quickstart: BM25, dense and hybrid retrieval on one dataset, evaluated honestly, as a report.

It answers the first question every user has ("what does a neural retriever buy me on my data,
and is the difference real?") with one command: a leaderboard with paired significance tests
against BM25, a markdown report, a bar chart and the TREC runs, all in one folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever._io import atomic_dir, write_json
from pretriever._manifest import write_manifest
from pretriever.data.dataset import Dataset
from pretriever.encoders.dense import DenseEncoder
from pretriever.evaluation.measures import Evaluation, evaluate
from pretriever.evaluation.report import bar_chart, format_table, markdown_table
from pretriever.evaluation.significance import Comparison, compare
from pretriever.indexes.bm25 import BM25Index
from pretriever.indexes.dense import FlatIndex
from pretriever.retrieval.fusion import Fusion, fuse
from pretriever.runs import write_run

METRICS = ("nDCG@10", "Recall@100", "MRR@10", "MAP@100")


@dataclass
class QuickstartResult:
    """What the quickstart measured, and where it wrote the report."""

    evaluations: list[Evaluation]
    comparisons: list[Comparison]
    report_dir: Path | None
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        return format_table(self.evaluations, self.comparisons)


def quickstart(
    dataset: Dataset,
    *,
    model: str = "minilm",
    split: str = "test",
    out: str | Path | None = None,
    overwrite: bool = False,
    k: int = 100,
    seed: int = 42,
    progress: bool = True,
    work_dir: str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
) -> QuickstartResult:
    """Build BM25, dense and hybrid (min-max weighted sum, and RRF) retrievers, evaluate them on
    ``split`` and, if ``out`` is given, write the report folder there."""
    seconds: dict[str, float] = {}
    queries = dataset.split_queries(split)
    qrels = dataset.qrels(split)
    start = time.perf_counter()
    bm25 = BM25Index(progress=progress).build(dataset.corpus)
    seconds["bm25 index"] = time.perf_counter() - start
    start = time.perf_counter()
    encoder = DenseEncoder(model, backend=backend, precision=precision)
    dense = FlatIndex(encoder, progress=progress, work_dir=work_dir).build(dataset.corpus)
    seconds["dense encode"] = time.perf_counter() - start
    start = time.perf_counter()
    runs = {"bm25": bm25.search(queries, k=k), "dense": dense.search(queries, k=k)}
    # fuse the member runs already computed, as Pipeline.search would, instead of searching again
    for name, fusion in (("hybrid", Fusion("wsum", "min-max")), ("hybrid-rrf", Fusion("rrf"))):
        runs[name] = fuse([runs["bm25"], runs["dense"]], fusion, k=k)
    seconds["search + fusion"] = time.perf_counter() - start
    evaluations = [evaluate(qrels, run, METRICS, name=name) for name, run in runs.items()]
    comparisons = [c for metric in ("nDCG@10", "Recall@100")
                   for c in compare(evaluations, metric, seed=seed)]
    result = QuickstartResult(evaluations, comparisons, None, seconds)
    if out is not None:
        result.report_dir = write_report(Path(out), dataset, split, result, runs,
                                         {"model": model, "k": k, "seed": seed,
                                          "encoder": {"backend": encoder.resolved[0],
                                                      "precision": encoder.resolved[1]}},
                                         overwrite=overwrite)
    return result


def write_report(out: Path, dataset: Dataset, split: str, result: QuickstartResult,
                 runs: dict[str, Any], params: dict[str, Any], *, overwrite: bool = False) -> Path:
    """report.md + chart.png + results.json + runs/*.trec + manifest.json, atomically."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, run in runs.items():
            write_run(tmp / "runs" / f"{name}.trec", run, name=name)
        bar_chart(result.evaluations, ["nDCG@10", "Recall@100"], tmp / "chart.png",
                  f"{dataset.name} / {split} ({len(dataset.qrels(split))} queries)")
        ndcg = [c for c in result.comparisons if c.metric == "nDCG@10"]
        write_json(tmp / "results.json", {
            "dataset": dataset.name, "split": split, **params,
            "runs": [ev.to_dict() for ev in result.evaluations],
            "significance": [
                {"run": c.name, "baseline": c.baseline, "metric": c.metric, "delta": c.delta,
                 "p_value": c.p_value, "significant": c.significant, "test": c.test}
                for c in result.comparisons
            ],
            "seconds": result.seconds,
        })
        lines = [
            f"# pretriever quickstart: {dataset.name} ({split})",
            "",
            f"{len(dataset.corpus):,} documents, {len(dataset.qrels(split))} judged queries. "
            f"Dense model: `{params['model']}` ({params['encoder']['backend']}, "
            f"{params['encoder']['precision']}). Hybrid: min-max normalised scores, weighted sum "
            "0.5 / 0.5; hybrid-rrf: reciprocal rank fusion (k=60). Depth 100.",
            "",
            markdown_table(result.evaluations, ndcg),
            "",
            f"`*`: nDCG@10 differs from bm25 with p < {ndcg[0].alpha if ndcg else 0.05} (paired "
            f"randomization test over queries, 10,000 permutations, seed {params['seed']}).",
            "",
            "![nDCG@10 and Recall@100 per system](chart.png)",
            "",
            "Time: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()) + ".",
            "",
            "Runs are in `runs/` (TREC format); `results.json` holds every number above.",
        ]
        (tmp / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_manifest(tmp, kind="report.quickstart", format_version=1, params=params,
                       provenance={"corpus": dataset.corpus.fingerprint(), "split": split})
    return out


def load_results(folder: str | Path) -> dict[str, Any]:
    """Read a report's results.json (plain data)."""
    return json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))
