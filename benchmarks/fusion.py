"""Label-free fusion rules and pseudo-relevance feedback, judged by the final pipeline on all five
shared collections (what `pretriever build` uses with no labels).

    python benchmarks/fusion.py [--datasets scifact,nfcorpus,cranfield,lisa,adi] [--no-append]

Members: BM25 (pretriever's, with or without RM3), dense MiniLM (exact; with or without Rocchio)
and zero-shot MaxSim through PLAID, rescoring the union of the other members' top 100 (the
pipeline's default). Corpus encodings are cached under /tmp/pretriever-bench/ (shared with
benchmarks/colbert.py). Every cell is test nDCG@10; the last columns are the mean and the smallest
difference to the off-the-shelf hybrid (BM25 + dense, min-max 0.5 / 0.5). Nothing is tuned on
labels: each row is one fixed rule.

Fusion rules: min-max and z-score normalised sums with equal weights, RRF (k = 60), and two
label-free weightings kept here because they were measured not to win: "QPP" weighs each run per
query by how far its top score stands out of its top 100 (max - mean over the standard deviation,
a query-performance predictor in the spirit of Shtok et al. 2012's NQC), "overlap" weighs each run
per query by how much its top 10 agrees with the other runs' top 10.

Unless --no-append, the section replaces this benchmark's in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, record_section

CACHE = Path("/tmp/pretriever-bench")


def minmax(hits: dict[str, float]) -> dict[str, float]:
    if not hits:
        return {}
    values = np.fromiter(hits.values(), dtype=float)
    lo, hi = values.min(), values.max()
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in hits.items()}


def weighted(runs: list[dict], rule: str) -> dict:
    """Per-query weighted min-max sum, the weights from ``rule`` ("qpp" or "overlap")."""
    fused = {}
    for q in set().union(*runs):
        hits = [run.get(q, {}) for run in runs]
        if rule == "overlap":
            tops = [set(sorted(h, key=h.get, reverse=True)[:10]) for h in hits]
            w = [
                1e-3 + np.mean([len(tops[i] & tops[j]) / 10 for j in range(len(hits)) if j != i])
                for i in range(len(hits))
            ]
        else:
            w = []
            for h in hits:
                v = np.fromiter(h.values(), dtype=float)
                w.append(0.0 if len(v) < 2 else max(1e-6, (v.max() - v.mean()) / (v.std() + 1e-9)))
        total = sum(w) or 1.0
        scores: dict[str, float] = {}
        for wi, h in zip(w, hits):
            for d, s in minmax(h).items():
                scores[d] = scores.get(d, 0.0) + wi / total * s
        fused[q] = scores
    return fused


def dataset_runs(name: str) -> tuple[dict, dict]:
    from pretriever.data import load_dataset
    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.feedback import RM3, Rocchio
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.indexes.plaid import PlaidIndex
    from pretriever.retrieval import load_index

    ds = load_dataset(name, progress=False)
    queries = ds.split_queries("test")
    qids = list(queries)
    key = hashlib.sha256(f"{ds.corpus.sha256}-minilm".encode()).hexdigest()[:12]
    dense_dir, plaid_dir = CACHE / f"colbert-dense-{name}-{key}", CACHE / f"colbert-plaid-{name}-{key}"
    if not dense_dir.is_dir():
        FlatIndex(DenseEncoder("minilm"), progress=False).build(ds.corpus).save(dense_dir)
    if not plaid_dir.is_dir():
        PlaidIndex(ColBERTEncoder("minilm"), progress=False).build(ds.corpus).save(plaid_dir)
    runs = {
        "bm25": BM25Index(progress=False).build(ds.corpus).search(queries, 100),
        "bm25+rm3": BM25Index(progress=False, feedback=RM3()).build(ds.corpus).search(queries, 100),
        "bm25+rm3short": BM25Index(progress=False, feedback=RM3(max_query_terms=3))
        .build(ds.corpus)
        .search(queries, 100),
    }
    dense = load_index(dense_dir)
    vectors = dense.encode_queries(queries)
    runs["dense"] = dense.search_vectors(qids, vectors, 100)
    dense.feedback = Rocchio()
    runs["dense+rocchio"] = dense.search_vectors(qids, vectors, 100)
    plaid = load_index(plaid_dir)
    for lexical, vector in (
        ("bm25", "dense"),
        ("bm25+rm3", "dense"),
        ("bm25+rm3short", "dense"),
        ("bm25", "dense+rocchio"),
        ("bm25+rm3short", "dense+rocchio"),
    ):
        union: dict = {q: {} for q in qids}
        for run in (runs[lexical], runs[vector]):
            for q, hits in run.items():
                union[q].update(hits)
        runs[f"maxsim|{lexical}|{vector}"] = plaid.score_run(union, queries)
    return runs, ds.qrels("test")


ROWS = [  # (label, members, rule)
    *[
        (f"BM25 + dense, {rule}", ("bm25", "dense"), rule)
        for rule in ("min-max", "z-score", "rrf", "qpp", "overlap")
    ],
    *[
        (f"BM25 + dense + MaxSim, {rule}", ("bm25", "dense", "maxsim|bm25|dense"), rule)
        for rule in ("min-max", "z-score", "rrf", "qpp", "overlap")
    ],
    ("BM25+RM3 + dense, min-max", ("bm25+rm3", "dense"), "min-max"),
    ("BM25 + dense+Rocchio, min-max", ("bm25", "dense+rocchio"), "min-max"),
    ("BM25+RM3 + dense + MaxSim, min-max", ("bm25+rm3", "dense", "maxsim|bm25+rm3|dense"), "min-max"),
    (
        "**BM25+RM3 (queries <= 3 terms) + dense + MaxSim, min-max** (build's default)",
        ("bm25+rm3short", "dense", "maxsim|bm25+rm3short|dense"),
        "min-max",
    ),
    (
        "BM25 + dense+Rocchio + MaxSim, min-max",
        ("bm25", "dense+rocchio", "maxsim|bm25|dense+rocchio"),
        "min-max",
    ),
    (
        "BM25+RM3 (<= 3 terms) + dense+Rocchio + MaxSim, min-max",
        ("bm25+rm3short", "dense+rocchio", "maxsim|bm25+rm3short|dense+rocchio"),
        "min-max",
    ),
]


def main() -> None:
    from pretriever.evaluation import evaluate
    from pretriever.retrieval.fusion import Fusion, fuse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus,cranfield,lisa,adi")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    rules = {"min-max": Fusion("wsum", "min-max"), "z-score": Fusion("wsum", "z-score"), "rrf": Fusion("rrf")}
    scores: dict[tuple[str, str], float] = {}
    singles: dict[tuple[str, str], float] = {}
    for name in names:
        runs, qrels = dataset_runs(name)
        for member in ("bm25", "bm25+rm3", "bm25+rm3short", "dense", "dense+rocchio"):
            singles[(member, name)] = evaluate(qrels, runs[member], ["nDCG@10"]).metrics["nDCG@10"]
        for label, members, rule in ROWS:
            member_runs = [runs[m] for m in members]
            fused = fuse(member_runs, rules[rule], k=100) if rule in rules else weighted(member_runs, rule)
            scores[(label, name)] = evaluate(qrels, fused, ["nDCG@10"]).metrics["nDCG@10"]
        print(name, "done", flush=True)
    base = {n: scores[(ROWS[0][0], n)] for n in names}
    lines = [
        "## Label-free fusion and pseudo-relevance feedback "
        f"({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC})",
        "",
        machine_line(("torch", "openvino", "faiss-cpu", "bm25s", "ranx")),
        "",
        "Test nDCG@10 of each fixed rule (no labels anywhere); Δ = difference to the off-the-shelf "
        "hybrid (first row). RM3: Pyserini's defaults (10 documents, 10 terms, original weight 0.5, "
        "Anserini's 10% document-frequency rule); Rocchio: query + 0.5 x the mean of its top 3 "
        "documents; MaxSim rescoring the union of the other members' top 100.",
        "",
        "| members, fusion | " + " | ".join(names) + " | mean Δ | smallest Δ |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for label, _, _ in ROWS:
        deltas = [scores[(label, n)] - base[n] for n in names]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{scores[(label, n)]:.4f}" for n in names)
            + f" | {np.mean(deltas):+.4f} | {min(deltas):+.4f} |"
        )
    lines += [
        "",
        "Members alone: "
        + "; ".join(
            f"{m} " + " / ".join(f"{singles[(m, n)]:.4f}" for n in names)
            for m in ("bm25", "bm25+rm3", "bm25+rm3short", "dense", "dense+rocchio")
        )
        + f" ({' / '.join(names)}).",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_append:
        record_section(section)


if __name__ == "__main__":
    main()
