"""Learned sparse retrieval against BM25, side by side in one run, on the shared collections.

    python benchmarks/sparse.py --model LABEL=FOLDER [--model LABEL=FOLDER ...]
                                [--datasets scifact nfcorpus] [--cache DIR] [--no-append]

FOLDER may hold ``{dataset}`` (e.g. ``--model "no labels=models/{dataset}-sparse-pre"``); a model
missing for a collection is skipped there; ``untrained`` stands for the bundled MiniLM with
pretriever's identity MLM head, built inference-free on the collection's IDF.

Effectiveness table, per collection and model: nDCG@10 on the test split by exact search
(``SparseIndex``), active terms per document, FLOPS (``SparseIndex.stats``), document encoding
rate, and the sparse + dense hybrid (min-max weighted sum with equal weights, the fusion of
``hybrid``) next to BM25 + dense (the same dense run, MiniLM). Documents are encoded once per model
and cached in --cache by the model's weights checksum.

Speed table, per collection and model: one query at a time (the
test queries, several passes, the first discarded as warm-up), top 10 out; the two sides of each
ratio are timed interleaved, query by query, so that this VM's drift does not enter the ratio:
- bm25s alone (its tokenizer + ``retrieve``) and pretriever's exact sparse index;
- Seismic alone (``SeismicIndex.search`` on the query vectors) and pretriever over Seismic on the
  same vectors: the wrapper's throughput over the library's, which the issue wants >= 0.95;
- pretriever over Seismic from text (query encoding included: for an inference-free model a
  tokeniser and a lookup).

Unless --no-append, the section "Learned sparse" of benchmarks/RESULTS.md is replaced.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse
from _common import machine_line, record_section

from pretriever.data import load_dataset
from pretriever.encoders.sparse import SparseEncoder, _weights_digest
from pretriever.evaluation.measures import evaluate
from pretriever.indexes.bm25 import BM25Index
from pretriever.indexes.sparse import SeismicSparseIndex, SparseIndex, _rows
from pretriever.retrieval.fusion import fuse
from pretriever.retrieval.spec import build_named

METRIC = "nDCG@10"
K = 10


def encoder_for(source: str, corpus) -> SparseEncoder:
    if source == "untrained":
        return SparseEncoder("minilm", kind="inference-free", idf=corpus.contents())
    return SparseEncoder(source)


def documents(
    encoder: SparseEncoder, corpus, cache: Path, name: str
) -> tuple[scipy.sparse.csr_matrix, float]:
    """The corpus encoded (cached by weights checksum): (rows, documents per second, NaN if cached)."""
    path = cache / f"{name}-{_weights_digest(encoder.model)}-{encoder.max_length}.npz"
    if path.is_file():
        return scipy.sparse.load_npz(path).tocsr(), float("nan")
    start = time.perf_counter()
    rows = encoder.encode_documents(corpus.contents(), progress=True)
    rate = len(corpus) / (time.perf_counter() - start)
    cache.mkdir(parents=True, exist_ok=True)
    scipy.sparse.save_npz(path, rows)
    return rows, rate


def dense(ds, queries: dict, cache: Path) -> dict:
    """MiniLM's dense run over the test queries (cached: it is the same for every model)."""
    from pretriever.runs import read_run, write_run

    path = cache / f"{ds.name}-{ds.corpus.sha256[:12]}-dense.trec"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        write_run(path, build_named("dense", ds, progress=False).search(queries, k=100), name="dense")
    return read_run(path)[0]


def per_query(fn, items: list, passes: int = 3) -> tuple[float, float]:
    """(queries per second, p50 ms) of ``fn(item)`` one item at a time, the first pass discarded."""
    times = []
    for n in range(passes):
        for item in items:
            start = time.perf_counter()
            fn(item)
            if n:
                times.append(time.perf_counter() - start)
    return len(times) / sum(times), 1000 * statistics.median(times)


def paired(fn_a, items_a: list, fn_b, items_b: list, passes: int = 5) -> tuple[tuple, tuple]:
    """``per_query`` of two ways to answer the same queries, interleaved query by query so that
    both see the same machine (their ratio is then not the noise of this VM between two loops),
    each going first on every other query."""
    times: tuple[list, list] = ([], [])
    for n in range(passes):
        for i, (a, b) in enumerate(zip(items_a, items_b)):
            pair = ((fn_a, a, times[0]), (fn_b, b, times[1]))
            for fn, item, out in pair if i % 2 else pair[::-1]:  # who goes second finds warm caches
                start = time.perf_counter()
                fn(item)
                if n:
                    out.append(time.perf_counter() - start)
    return tuple((len(t) / sum(t), 1000 * statistics.median(t)) for t in times)


def speed_rows(corpus, queries: dict, encoder: SparseEncoder, rows: scipy.sparse.csr_matrix) -> list[tuple]:
    import bm25s

    texts = list(queries.values())
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenize(corpus.contents(), show_progress=False), show_progress=False)

    def bm25s_search(text: str) -> None:
        bm25.retrieve(bm25s.tokenize([text], show_progress=False), k=K, show_progress=False, n_threads=1)

    exact = SparseIndex(encoder, progress=False)
    exact._install(rows, corpus.ids)
    seismic = SeismicSparseIndex(encoder, progress=False)
    seismic._install(rows, corpus.ids)
    vectors = encoder.encode_queries(texts)
    library = seismic._seismic
    string = __import__("seismic").get_seismic_string()
    prepared = [
        (str(i), t.astype(str).astype(string), w.astype(np.float32))
        for i, (t, w) in enumerate(_rows(vectors))
    ]

    def seismic_alone(item: tuple) -> None:
        qid, terms, weights = item
        library.search(qid, terms, weights, k=K, query_cut=seismic.query_cut, heap_factor=seismic.heap_factor)

    bm25s_time, exact_time = paired(bm25s_search, texts, lambda t: exact.search({"q": t}, k=K), texts)
    out = [("bm25s alone (tokenise + retrieve)", *bm25s_time)]
    out.append(("pretriever sparse, exact (from text)", *exact_time))
    one_by_one = [vectors[i : i + 1] for i in range(len(texts))]  # prepared like Seismic's arrays
    alone, wrapped = paired(
        seismic_alone, prepared, lambda row: seismic.search_vectors(["q"], row, K), one_by_one
    )
    out.append(("Seismic alone (query vectors)", *alone))
    out.append(("pretriever over Seismic (query vectors)", *wrapped))
    out.append(
        ("pretriever over Seismic (from text)", *per_query(lambda t: seismic.search({"q": t}, k=K), texts))
    )
    recall = []
    for i, qid in enumerate(queries):
        truth = set(exact.search_vectors([qid], vectors[i : i + 1], K)[qid])
        found = set(seismic.search_vectors([qid], vectors[i : i + 1], K)[qid])
        recall.append(len(truth & found) / max(len(truth), 1))
    return [
        *out,
        ("wrapper / library (vectors), throughput ratio", wrapped[0] / alone[0], None),
        ("exact sparse / bm25s, p50 latency ratio", exact_time[1] / bm25s_time[1], None),
        ("Seismic top-10 overlap with exact", float(np.mean(recall)), None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=FOLDER")
    parser.add_argument("--datasets", nargs="+", default=["scifact", "nfcorpus"])
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "pretriever-sparse"
    )
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--no-speed", action="store_true", help="effectiveness only (quick looks)")
    args = parser.parse_args()
    models = [tuple(m.split("=", 1)) for m in args.model] or [("untrained", "untrained")]
    effect, speed = [], []
    for name in args.datasets:
        ds = load_dataset(name)
        corpus, queries, qrels = ds.corpus, ds.split_queries("test"), ds.qrels("test")
        bm25_run = BM25Index(progress=False).build(corpus).search(queries, k=100)
        dense_run = dense(ds, queries, args.cache)
        score = lambda run, qrels=qrels: evaluate(qrels, run, [METRIC]).metrics[METRIC]  # noqa: E731
        effect.append(
            (
                name,
                "BM25 (bm25s, lucene)",
                score(bm25_run),
                score(fuse([bm25_run, dense_run])),
                None,
                None,
                None,
            )
        )
        for label, template in models:
            source = template.format(dataset=name)
            if source != "untrained" and not Path(source).is_dir():
                print(f"{name}: no model {source} for {label}: skipped", flush=True)
                continue
            encoder = encoder_for(source, corpus)
            rows, rate = documents(encoder, corpus, args.cache, name)
            index = SparseIndex(encoder, progress=False)
            index._install(rows, corpus.ids)
            run = index.search(queries, k=100)
            stats = index.stats()
            effect.append(
                (
                    name,
                    label,
                    score(run),
                    score(fuse([run, dense_run])),
                    stats["terms_per_document"],
                    stats["flops"],
                    rate,
                )
            )
            print(effect[-1], flush=True)
            if not args.no_speed:
                speed += [(name, label, *row) for row in speed_rows(corpus, queries, encoder, rows)]
                print(speed[-9:], flush=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"## Learned sparse: trained models, BM25 and Seismic side by side ({stamp})",
        "",
        machine_line(("torch", "transformers", "sentence-transformers", "bm25s", "pyseismic-lsr")),
        "",
        "Test split, exact search; hybrid = min-max weighted sum with MiniLM dense (equal weights). "
        "Encode rate: documents/s on 2 cores at the model's max length (blank: read from the cache).",
        "",
        f"| collection | retriever | {METRIC} | + dense hybrid | terms / document | FLOPS | encode docs/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, label, ndcg, hybrid, terms, flops, rate in effect:
        tail = (
            " | | | |"
            if terms is None
            else (f" | {terms:,.0f} | {flops:,.2f} | {'' if rate != rate else f'{rate:.1f}'} |")
        )
        lines.append(f"| {name} | {label} | {ndcg:.4f} | {hybrid:.4f}" + tail)
    lines += [
        "",
        "Speed, one query at a time, top 10 out:",
        "",
        "| collection | model | what | queries/s | p50 ms |",
        "|---|---|---|---:|---:|",
    ]
    for name, label, what, qps, p50 in speed:
        value = f"{qps:,.0f} | {p50:.3f}" if p50 is not None else f"{qps:.3f} |"
        lines.append(f"| {name} | {label} | {what} | {value} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_append:
        record_section(section)


if __name__ == "__main__":
    main()
