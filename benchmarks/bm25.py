"""BM25 side by side: pretriever's BM25Index, plain bm25s and rank_bm25, in one process.

    python benchmarks/bm25.py [--datasets scifact nfcorpus] [--repeats 3] [--no-append]

Why this script exists: pretriever's BM25Index is a wrapper over bm25s, and a wrapper must not
tax its users. The target is bm25s_time / pretriever_time >= 0.95 for both indexing and search.
rank_bm25 is the pure-Python library many users start from; it shows the scale of the gap.

What is held equal: the corpus is loaded once with ``pretriever.data.load_dataset`` (not timed);
every system sees title + " " + text per document, lowercased, English stopwords removed and
stemmed with PyStemmer's Snowball "english"; k1 = 1.5, b = 0.75 (each library's default); the
test-split queries of each dataset; k = 100. Each system returns the same thing, a run
{query id: {doc id: score}} holding the documents that share a term with the query.

What is timed: "index" = joining title and text, tokenising the corpus and building the index;
"search" = tokenising the queries, retrieving the top 100 and building the run dict. Each system
builds once and searches once untimed first (imports, lazily built tables, caches), then the
timed repeats run interleaved (pretriever, bm25s, rank_bm25, pretriever, ...) so that load from
other processes hits every system alike; the best (min) of the repeats is reported.

Each system's run is scored with ``pretriever.evaluation.evaluate`` (nDCG@10) to show the runs
agree: pretriever and bm25s should match to ~1e-4; rank_bm25's BM25Okapi uses a different IDF
(ATIRE, floored at 0.25 x the mean IDF), so its numbers may differ a little.

Unless --no-append, a dated section (machine, versions, command, table) replaces this benchmark's
section of benchmarks/RESULTS.md (written atomically; see _common.record_section).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer
from _common import command, cores, cpu_model, record_section, version
from rank_bm25 import BM25Okapi

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
DATA_ENV = "PRETRIEVER_DATA"

K = 100
SPLIT = "test"
METRIC = "nDCG@10"
STOPWORDS = "en"
STEMMER = "english"
TARGET = 0.95  # bm25s_time / pretriever_time, for index and for search
SYSTEMS = ("pretriever", "bm25s", "rank_bm25")
LIBRARIES = ("pretriever", "bm25s", "PyStemmer", "rank-bm25", "numpy", "scipy", "ranx")



# -- the three systems, each written the way its own users would write it ------------------------
Run = dict[str, dict[str, float]]


class Pretriever:
    """pretriever's public API: build, then search (which returns a run dict)."""

    name = "pretriever"

    def build(self, corpus: Any) -> Any:
        from pretriever import BM25Index

        return BM25Index(progress=False).build(corpus)

    def search(self, index: Any, queries: dict[str, str]) -> Run:
        return index.search(queries, k=K)


class PlainBM25s:
    """bm25s as its README shows it (numpy backend, default n_threads), plus the dict conversion."""

    name = "bm25s"

    def build(self, corpus: Any) -> Any:
        texts = [f"{title} {text}" for title, text in zip(corpus.titles, corpus.texts)]
        stemmer = Stemmer.Stemmer(STEMMER)
        tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=stemmer, show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return retriever, stemmer, corpus.ids

    def search(self, index: Any, queries: dict[str, str]) -> Run:
        retriever, stemmer, doc_ids = index
        qids = list(queries)
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=STOPWORDS, stemmer=stemmer,
                                show_progress=False)
        docs, scores = retriever.retrieve(tokens, k=min(K, len(doc_ids)), show_progress=False)
        return {
            qid: {doc_ids[d]: s for d, s in zip(docs[i].tolist(), scores[i].tolist()) if s > 0}
            for i, qid in enumerate(qids)
        }


class RankBM25:
    """rank_bm25's BM25Okapi over the same stemmed, stopworded tokens (lists of strings)."""

    name = "rank_bm25"

    def build(self, corpus: Any) -> Any:
        texts = [f"{title} {text}" for title, text in zip(corpus.titles, corpus.texts)]
        stemmer = Stemmer.Stemmer(STEMMER)
        tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=stemmer, return_ids=False,
                                show_progress=False)
        return BM25Okapi(tokens), stemmer, corpus.ids

    def search(self, index: Any, queries: dict[str, str]) -> Run:
        model, stemmer, doc_ids = index
        qids = list(queries)
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=STOPWORDS, stemmer=stemmer,
                                return_ids=False, show_progress=False)
        k = min(K, len(doc_ids))
        run: Run = {}
        for qid, query in zip(qids, tokens):
            scores = model.get_scores(query)
            top = np.argpartition(-scores, k - 1)[:k]
            run[qid] = {doc_ids[d]: float(scores[d]) for d in top.tolist() if scores[d] > 0}
        return run


# -- measuring ------------------------------------------------------------------------------------
@dataclass
class Row:
    dataset: str
    system: str
    index_s: float
    search_s: float
    n_queries: int
    ndcg: float

    @property
    def qps(self) -> float:
        return self.n_queries / self.search_s


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()  # a collection left over from the previous system should not land in this timing
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_dataset(name: str, repeats: int) -> tuple[list[Row], list[str]]:
    from pretriever.data import load_dataset
    from pretriever.evaluation import evaluate

    dataset = load_dataset(name, download=False)
    corpus = dataset.corpus
    qrels = dataset.qrels(SPLIT)
    queries = dataset.split_queries(SPLIT)
    print(f"{name}: {len(corpus):,} documents, {len(queries):,} {SPLIT} queries", flush=True)

    systems = [Pretriever(), PlainBM25s(), RankBM25()]
    for system in systems:  # warm-up, untimed
        system.search(system.build(corpus), queries)

    index_times: dict[str, list[float]] = {s.name: [] for s in systems}
    search_times: dict[str, list[float]] = {s.name: [] for s in systems}
    runs: dict[str, Run] = {}
    for _ in range(repeats):
        for system in systems:
            seconds, index = _timed(lambda s=system: s.build(corpus))
            index_times[system.name].append(seconds)
            seconds, runs[system.name] = _timed(lambda s=system, i=index: s.search(i, queries))
            search_times[system.name].append(seconds)
            del index

    rows = []
    for system in systems:
        ndcg = evaluate(qrels, runs[system.name], [METRIC]).metrics[METRIC]
        rows.append(Row(name, system.name, min(index_times[system.name]),
                        min(search_times[system.name]), len(queries), ndcg))
        print(f"  {system.name:<10} index {min(index_times[system.name]):.3f} s, search "
              f"{min(search_times[system.name]):.3f} s, {METRIC} {ndcg:.4f}", flush=True)
    return rows, [f"{name}: {len(corpus):,} documents, {len(queries):,} {SPLIT} queries; "
                  + _agreement(runs["pretriever"], runs["bm25s"])]


def _agreement(ours: Run, theirs: Run) -> str:
    """How closely pretriever's run matches plain bm25s's: same documents, same scores?"""
    same_docs = sum(1 for q in ours if ours[q].keys() == theirs.get(q, {}).keys())
    diffs = [abs(s - theirs[q][d]) for q in ours for d, s in ours[q].items() if d in theirs.get(q, {})]
    return (f"pretriever and bm25s return the same documents for {same_docs}/{len(ours)} queries, "
            f"max score difference {max(diffs, default=0.0):.1e}")


# -- reporting ------------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    head = ("| dataset | system | index s | search s | queries/s | " + METRIC
            + " | index speed vs pretriever | search speed vs pretriever |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    ours = {r.dataset: r for r in rows if r.system == "pretriever"}
    for r in rows:
        base = ours[r.dataset]
        lines.append(
            f"| {r.dataset} | {r.system} | {r.index_s:.3f} | {r.search_s:.3f} | {r.qps:,.0f} | "
            f"{r.ndcg:.4f} | {r.index_s / base.index_s:.2f} | {r.search_s / base.search_s:.2f} |"
        )
    return "\n".join(lines)


def target_lines(rows: list[Row]) -> list[str]:
    out = []
    ours = {r.dataset: r for r in rows if r.system == "pretriever"}
    for r in rows:
        if r.system != "bm25s":
            continue
        index_ratio = r.index_s / ours[r.dataset].index_s
        search_ratio = r.search_s / ours[r.dataset].search_s
        met = index_ratio >= TARGET and search_ratio >= TARGET
        ndcg_gap = abs(r.ndcg - ours[r.dataset].ndcg)
        out.append(
            f"{r.dataset}: wrapper tax (bm25s time / pretriever time, target >= {TARGET}): index "
            f"{index_ratio:.2f}, search {search_ratio:.2f} -> {'met' if met else 'NOT met'}; "
            f"|{METRIC} pretriever - bm25s| = {ndcg_gap:.1e}"
        )
    return out


def machine_lines(load: tuple[float, float, float], data_note: str) -> list[str]:
    versions = ", ".join(f"{lib} {version(lib)}" for lib in LIBRARIES)
    return [
        f"- Machine: {cpu_model()}, {cores()} cores available to the process "
        f"(os.sched_getaffinity), load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"at start; {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); {versions}",
        f"- Command: `{command()}` ({data_note})",
    ]


def method_line(repeats: int) -> str:
    return (
        f"- Method: k={K}, {SPLIT} queries; title + text, lowercase, stopwords '{STOPWORDS}', "
        f"Snowball '{STEMMER}' for all three. Index time includes joining title and text and "
        "tokenising the corpus; search time includes tokenising the queries and building the "
        f"{{qid: {{docid: score}}}} run. Best (min) of {repeats} interleaved repeats, after one "
        "untimed warm-up build and search per system so that one-time costs are not counted; "
        "corpus loading is not timed. Speed columns are time_system / time_pretriever "
        "(>= 1: pretriever is at least as fast)."
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "nfcorpus"],
                        help="dataset names under $PRETRIEVER_DATA, or paths to BEIR folders")
    parser.add_argument("--repeats", type=_positive_int, default=3,
                        help="timed repeats per system; the best (min) is reported")
    parser.add_argument("--no-append", action="store_true",
                        help="print the table only; do not write RESULTS.md")
    args = parser.parse_args(argv)

    if os.environ.get(DATA_ENV, "").strip():
        data_note = f"{DATA_ENV}={os.environ[DATA_ENV]}"
    else:
        os.environ[DATA_ENV] = str(DEFAULT_DATA)
        data_note = f"{DATA_ENV} unset, so ../shared/datasets relative to the repository root"

    load = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    rows: list[Row] = []
    notes: list[str] = []
    for name in args.datasets:
        dataset_rows, dataset_notes = bench_dataset(name, args.repeats)
        rows += dataset_rows
        notes += dataset_notes

    body = "\n".join([
        *machine_lines(load, data_note),
        method_line(args.repeats),
        "",
        table(rows),
        "",
        *(f"- {line}" for line in notes + target_lines(rows)),
    ])
    print()
    print(body)
    if not args.no_append:
        title = f"## BM25: pretriever vs bm25s vs rank_bm25 ({started:%Y-%m-%d %H:%M} UTC)"
        record_section(f"{title}\n\n{body}")
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
