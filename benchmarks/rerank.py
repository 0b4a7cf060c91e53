"""Reranking speed and quality of every inference path, side by side in one run.

Peers: plain ``CrossEncoder.predict`` in fp32 (the baseline; batch 32, in the order given) and the
same model cast to bf16. pretriever: ``Reranker.score`` (length-sorted batches) on each backend:
torch fp32 / bf16, OpenVINO f32 / bf16 / int8 (int8 made by ``optimize``, calibrated on 300
documents of the same corpus; its one-time cost reported apart).

Pairs: the first stage's top ``--depth`` for every test query (hybrid BM25 + MiniLM by default),
the same pairs for every path. For each path: pairs/s, nDCG@10 of the reranked run, and the
correlation of its scores with the fp32 baseline's. Writes its section of benchmarks/RESULTS.md.

    python benchmarks/rerank.py --reranker models/sf-reranker [--dataset scifact] [--depth 20]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _common import machine_line, record_section

LIBS = ("torch", "sentence-transformers", "transformers", "openvino", "nncf")
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", required=True, help="a cross-encoder folder (train-reranker output)")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--first-stage", default="hybrid")
    parser.add_argument("--depth", type=int, default=20, help="documents per query reranked (default 20)")
    parser.add_argument("--queries", type=int, default=0, help="use only the first N test queries")
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    from pretriever.data import load_dataset
    from pretriever.encoders.cross import Reranker, rerank_scores
    from pretriever.evaluation import evaluate
    from pretriever.optimize import optimize
    from pretriever.retrieval import retrieve
    from pretriever.runs import ranked

    dataset = load_dataset(args.dataset)
    qrels = dataset.qrels("test")
    queries = dataset.split_queries("test")
    if args.queries:
        queries = dict(list(queries.items())[: args.queries])
        qrels = {q: qrels[q] for q in queries}  # score the subset only
    first, _, _ = retrieve(dataset, args.first_stage, queries=queries, k=args.depth, progress=False)
    texts = dataset.corpus.text_map()
    keys = [(q, h.doc_id) for q in queries for h in ranked(first.get(q, {}), args.depth)]
    pairs = [(queries[q], texts[d]) for q, d in keys]
    first_ndcg = evaluate(qrels, first, ["nDCG@10"]).metrics["nDCG@10"]
    print(f"{len(pairs):,} pairs ({len(queries)} queries x top {args.depth} of {args.first_stage}, "
          f"nDCG@10 {first_ndcg:.4f})", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    start = time.perf_counter()
    # no quality bar: the benchmark measures the int8 model whatever the guard says, and reports it
    report = optimize(args.reranker, dataset.corpus, precision="int8", out=tmp / "int8", calibration=300,
                      check=100, min_quality=-1.0)
    optimize_s = time.perf_counter() - start

    max_length = Reranker.load(args.reranker).max_length
    plain = CrossEncoder(args.reranker, device="cpu", max_length=max_length)
    plain_bf16 = CrossEncoder(args.reranker, device="cpu", max_length=max_length).to(torch.bfloat16)
    identity = torch.nn.Identity()

    def st(model) -> Callable[[list], np.ndarray]:
        return lambda p: np.asarray(model.predict(p, batch_size=BATCH, activation_fn=identity,
                                                  show_progress_bar=False), dtype=np.float32)

    def ours(folder, backend: str, precision: str) -> Callable[[list], np.ndarray]:
        reranker = Reranker.load(folder, backend=backend, precision=precision, batch_size=BATCH)
        reranker.score(pairs[:BATCH])  # load + compile, not timed
        return reranker.score

    systems: list[tuple[str, Callable[[], Callable[[list], np.ndarray]]]] = [
        ("sentence-transformers CrossEncoder.predict fp32", lambda: st(plain)),
        ("sentence-transformers CrossEncoder.predict bf16", lambda: st(plain_bf16)),
        ("pretriever torch fp32", lambda: ours(args.reranker, "torch", "float32")),
        ("pretriever torch bf16", lambda: ours(args.reranker, "torch", "bfloat16")),
        ("pretriever OpenVINO f32", lambda: ours(args.reranker, "openvino", "float32")),
        ("pretriever OpenVINO bf16", lambda: ours(args.reranker, "openvino", "bfloat16")),
        ("pretriever OpenVINO int8", lambda: ours(tmp / "int8", "openvino", "int8")),
    ]
    rows, baseline, base_rate = [], None, None
    for name, make in systems:
        score = make()
        score(pairs[:BATCH])  # warm-up batch, not timed
        t0 = time.perf_counter()
        values = score(pairs)
        seconds = time.perf_counter() - t0
        rate = len(pairs) / seconds
        if baseline is None:
            baseline, base_rate = values, rate
        scores: dict[str, dict[str, float]] = {q: {} for q in queries}
        for (q, d), v in zip(keys, values.tolist()):
            scores[q][d] = v
        ndcg = evaluate(qrels, rerank_scores(first, scores), ["nDCG@10"]).metrics["nDCG@10"]
        corr = float(np.corrcoef(values, baseline)[0, 1])
        rows.append(f"| {name} | {rate:.1f} | {rate / base_rate:.2f}x | {ndcg:.4f} | {corr:.5f} |")
        print(rows[-1], flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    table = "\n".join(["| path | pairs/s | x ST fp32 | nDCG@10 | score correlation to ST fp32 |",
                       "|---|---:|---:|---:|---:|", *rows])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## Reranking: every inference path on {dataset.name} ({when})", "",
        machine_line(LIBS),
        f"- Method: reranker `{args.reranker}` (max {max_length} tokens); {len(pairs):,} pairs = top "
        f"{args.depth} of {args.first_stage} (nDCG@10 {first_ndcg:.4f}) for {len(queries)} test "
        f"queries; batch {BATCH}; one timed pass per path after load and one warm-up batch. nDCG@10 of "
        "the reranked top-depth. int8: `optimize(..., calibration=300, check=100)` took "
        f"{optimize_s:.0f} s once (guard: score correlation {report.quality:.4f} against the 0.995 "
        f"threshold, same top document for {report.worst:.0%} of pseudo-queries).",
        "", table,
    ])
    print(section)
    if not args.no_append:
        record_section(section)


if __name__ == "__main__":
    main()
