"""Late interaction side by side: pretriever's exact MaxSim and PLAID indexes against the
single-vector exact index, and BM25 + dense + MaxSim through pretriever's own pipeline.

    python benchmarks/colbert.py [--datasets scifact,nfcorpus] [--model minilm] [--nbits 2]
                                 [--nprobe 4] [--ndocs 64] [--no-append]

Per dataset, the corpus is encoded once (zero-shot token vectors of ``--model``, cached as an
exact index under /tmp/pretriever-bench/), and the PLAID index is fitted on those same vectors
(``PlaidIndex.install``; timed). The single-vector dense index (the same model, pooled) and BM25
are built too. Test queries are encoded once; then every system searches them one query at a
time (k = 10; the latency a user of a search box sees), after one untimed pass: queries/s, p50 and
p95 ms. Index bytes per document are the .npy files of each folder; peak RAM is tracemalloc's peak
during the timed searches (numpy buffers included; the memory-mapped arrays are not allocations).

Quality (nDCG@10 on the test qrels, k = 100): each index alone; PLAID's recall of the exact top-10;
and the pipeline BM25 + dense + MaxSim (min-max, equal weights; MaxSim scores the union of the
BM25 and dense top-100) through ``retrieval.Pipeline`` with the exact and with the PLAID member,
against the BM25 + dense hybrid, with the paired randomization test; ``--fusion-datasets`` (the
three small collections by default) get that table only.

PyLate's own index cannot run beside this stack: PyLate 1.6 pins sentence-transformers 5.3 and
transformers <= 5.3, and fast-plaid wheels exist only for torch <= 2.11 (we run 2.13), so the
comparison with it is not in the table (README says so).

Unless --no-append, the section replaces this benchmark's in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, record_section

CACHE = Path("/tmp/pretriever-bench")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix == ".npy")


def timed_queries(search, qids: list[str], vectors: list, k: int) -> tuple[list[float], int]:
    """Per-query latencies (s) of ``search(qid, vector, k)`` after an untimed pass over the first 20,
    and the peak bytes allocated during the timed pass."""
    for qid, v in zip(qids[:20], vectors[:20]):
        search(qid, v, k)
    tracemalloc.start()
    latencies = []
    for qid, v in zip(qids, vectors):
        start = time.perf_counter()
        search(qid, v, k)
        latencies.append(time.perf_counter() - start)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return latencies, peak


def run_dataset(name: str, args: argparse.Namespace, speed: bool = True) -> tuple[list[str], list[str]]:
    from pretriever.data import load_dataset
    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.evaluation import compare, evaluate
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.indexes.late_interaction import MaxSimIndex
    from pretriever.indexes.plaid import PlaidIndex
    from pretriever.retrieval import Pipeline, load_index

    ds = load_dataset(name, progress=False)
    queries, qrels = ds.split_queries("test"), ds.qrels("test")
    qids = list(queries)
    key = hashlib.sha256(f"{ds.corpus.sha256}-{args.model}".encode()).hexdigest()[:12]
    exact_dir, dense_dir = CACHE / f"colbert-{name}-{key}", CACHE / f"colbert-dense-{name}-{key}"
    encoded = "cached"
    if not exact_dir.is_dir():
        start = time.perf_counter()
        MaxSimIndex(ColBERTEncoder(args.model), progress=False).build(ds.corpus).save(exact_dir)
        encoded = f"{time.perf_counter() - start:.0f} s"
    if not dense_dir.is_dir():
        FlatIndex(DenseEncoder(args.model), progress=False).build(ds.corpus).save(dense_dir)
    exact, dense = load_index(exact_dir), load_index(dense_dir)
    encoder = exact.get_encoder()
    start = time.perf_counter()
    plaid = PlaidIndex(
        encoder, nbits=args.nbits, nprobe=args.nprobe, ndocs=args.ndocs, progress=False
    ).install(exact.tokens, exact._offsets, ds.corpus, encoder)
    fit_seconds = time.perf_counter() - start
    plaid_dir = CACHE / f"colbert-plaid-{name}-{key}"
    plaid.save(plaid_dir, overwrite=True)
    plaid = load_index(plaid_dir)  # searched as a user would: memory-mapped from its folder
    bm25 = BM25Index(progress=False).build(ds.corpus)

    token_vectors = exact.encode_queries(queries)
    pooled = dense.encode_queries(queries)
    systems = {  # (folder, search(qids, vectors, k) -> run, query vectors)
        "single-vector exact (FlatIndex)": (dense_dir, dense.search_vectors, pooled),
        "MaxSim exact (MaxSimIndex, float16)": (exact_dir, exact.search_encoded, token_vectors),
        f"PLAID ({args.nbits}-bit, nprobe {args.nprobe}, ndocs {args.ndocs})": (
            plaid_dir, plaid.search_encoded, token_vectors),
    }
    rows, runs = [], {}
    timed = qids[: args.latency_queries]
    for label, (folder, search, vectors) in systems.items():
        run = search(qids, vectors, 100)  # every query in one call
        runs[label] = run
        if not speed:
            continue
        one = [vectors[i : i + 1] for i in range(len(timed))]  # one query per call
        latencies, peak = timed_queries(lambda q, v, k, s=search: s([q], v, k), timed, one, 10)
        ndcg = evaluate(qrels, run, ["nDCG@10"]).metrics["nDCG@10"]
        rows.append(
            f"| {name} | {label} | {len(qids) / sum(latencies):.1f} | {1000 * np.median(latencies):.1f} | "
            f"{1000 * np.percentile(latencies, 95):.1f} | "
            f"{folder_bytes(Path(folder)) / len(ds.corpus):,.0f} | "
            f"{peak / 2**20:.0f} | {ndcg:.4f} |"
        )
    exact_run, plaid_run = list(runs.values())[1:]

    def top10(run: dict, q: str) -> set:
        return set(sorted(run[q], key=run[q].get, reverse=True)[:10])

    recall = np.mean(
        [len(top10(exact_run, q) & top10(plaid_run, q)) / max(1, len(top10(exact_run, q))) for q in qids]
    )
    fused = {}
    for label, member in (
        ("BM25 + dense (hybrid)", None),
        ("BM25 + dense + MaxSim, exact", exact),
        ("BM25 + dense + MaxSim, PLAID", plaid),
    ):
        members = {"bm25": bm25, "dense": dense, **({"colbert": member} if member is not None else {})}
        fused[label] = evaluate(qrels, Pipeline(members).search(queries, k=100), ["nDCG@10"], name=label)
    evaluations = list(fused.values())
    comparisons = (
        {c.name: c for c in compare(evaluations, "nDCG@10", seed=42)} if len(evaluations) > 1 else {}
    )
    quality = [
        f"| {name} | {e.name} | {e.metrics['nDCG@10']:.4f} | "
        + (
            f"{e.metrics['nDCG@10'] - evaluations[0].metrics['nDCG@10']:+.4f} "
            f"(p={comparisons[e.name].p_value:.3f})"
            if e.name in comparisons
            else "baseline"
        )
        + " |"
        for e in evaluations
    ]
    quality.append(f"| {name} | PLAID recall of the exact MaxSim top-10 | {recall:.4f} | |")
    stats = (
        f"- {name}: {len(ds.corpus):,} documents, {exact.tokens_count:,} token vectors; encoding "
        f"{encoded}; PLAID fit {fit_seconds:.0f} s ({plaid.n_centroids} centroids); index bytes per "
        f"token: float16 {2 * exact.tokens.shape[1]}, PLAID "
        f"{folder_bytes(plaid_dir) / exact.tokens_count:.0f}"
    )
    return [*rows, "STATS" + stats], quality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--fusion-datasets", default="adi,cranfield,lisa",
                        help="sets measured for the fusion table only (no speed rows)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--nbits", type=int, default=2)
    parser.add_argument("--nprobe", type=int, default=4)
    parser.add_argument("--ndocs", type=int, default=64)
    parser.add_argument("--latency-queries", type=int, default=100,
                        help="test queries searched one at a time for latency (default 100)")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    speed, quality, stats = [], [], []
    names = [(n, True) for n in args.datasets.split(",") if n] + \
        [(n, False) for n in args.fusion_datasets.split(",") if n]
    for name, speed_rows in names:
        rows, q = run_dataset(name, args, speed_rows)
        speed += [r for r in rows if not r.startswith("STATS")]
        stats += [r[5:] for r in rows if r.startswith("STATS")]
        quality += q
        print("\n".join(rows + q), flush=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            f"## Late interaction (ColBERT): exact MaxSim and PLAID vs single-vector, zero-shot ({when})",
            "",
            machine_line(("torch", "transformers", "faiss-cpu", "openvino")),
            f"- Zero-shot token vectors of `{args.model}` (no training), auto backend; queries encoded once, "
            "then "
            f"searched one at a time (k = 10) for speed on the first {args.latency_queries} test queries; "
        "k = 100 runs of every test query for nDCG@10.",
            *stats,
            "- PyLate's own index is not in the table: PyLate 1.6 pins sentence-transformers 5.3 / "
            "transformers <= 5.3 and fast-plaid wheels exist only for torch <= 2.11, so neither installs "
            "beside this stack.",
            "",
            "| set | index | queries/s | p50 ms | p95 ms | index bytes/doc | peak RAM MiB | nDCG@10 |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
            *speed,
            "",
            "| set | pipeline (min-max, equal weights; MaxSim rescoring the BM25 + dense top-100 union) "
            "| nDCG@10 | "
            "vs hybrid |",
            "|---|---|---:|---|",
            *quality,
            "",
        ]
    )
    if not args.no_append:
        record_section(section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
