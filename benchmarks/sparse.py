"""Learned sparse retrieval, first part: the untrained start of the bundled MiniLM as an
inference-free sparse encoder, against BM25, on the shared collections.

    python benchmarks/sparse.py [--datasets scifact nfcorpus] [--thresholds 3 4 5 6] [--no-append]

What it measures: the bundled all-MiniLM-L6-v2 with pretriever's identity MLM head
(``encoders/sparse.py``) as an inference-free encoder (documents expanded by the model, queries
IDF-weighted tokens of the corpus), searched exactly (``SparseIndex``), for several thresholds of
the head (its decoder bias): nDCG@10 on the test split, active terms per document, FLOPS per query
(``SparseIndex.stats``). Documents are encoded once at the lowest threshold; a higher threshold t
is derived exactly, because max-pooling commutes with the monotone log(1 + relu(x - t)): the
activation at t is log(1 + relu(expm1(a) + t0 - t)). BM25 (pretriever's, bm25s defaults) is the
reference row. The trained models and the side-by-side speed table of the issue (bm25s, exact,
Seismic direct and wrapped) are still to come.

Unless --no-append, the section "Learned sparse" of benchmarks/RESULTS.md is replaced.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse
import torch
from _common import machine_line, record_section

from pretriever.data import load_dataset
from pretriever.encoders.sparse import SparseEncoder
from pretriever.evaluation.measures import evaluate
from pretriever.indexes.bm25 import BM25Index
from pretriever.indexes.sparse import SparseIndex

METRIC = "nDCG@10"


def at_threshold(
    docs: scipy.sparse.csr_matrix, encoded_at: float, threshold: float
) -> scipy.sparse.csr_matrix:
    """The documents' activations had the head's threshold been ``threshold`` (>= ``encoded_at``)."""
    data = np.log1p(np.maximum(np.expm1(docs.data.astype(np.float64)) + encoded_at - threshold, 0))
    out = scipy.sparse.csr_matrix((data.astype(np.float32), docs.indices, docs.indptr), shape=docs.shape)
    out.eliminate_zeros()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["scifact", "nfcorpus"])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[3.0, 4.0, 5.0, 6.0])
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    rows = []
    lowest = min(args.thresholds)
    for name in args.datasets:
        ds = load_dataset(name)
        corpus, queries, qrels = ds.corpus, ds.split_queries("test"), ds.qrels("test")
        bm25 = BM25Index(progress=False).build(corpus).search(queries, k=100)
        rows.append(
            (name, "BM25 (bm25s, lucene)", evaluate(qrels, bm25, [METRIC]).metrics[METRIC], None, None, None)
        )
        encoder = SparseEncoder("minilm", kind="inference-free", idf=corpus.contents())
        head = encoder.model[0].sub_modules["document"][0].auto_model.cls.predictions
        with torch.no_grad():
            head.bias.fill_(-lowest)
        start = time.perf_counter()
        docs = encoder.encode_documents(corpus.contents(), progress=True)
        seconds = time.perf_counter() - start
        qvectors = encoder.encode_queries([queries[q] for q in queries])
        for threshold in args.thresholds:
            index = SparseIndex()
            index._install(at_threshold(docs, lowest, threshold), corpus.ids)
            run = index.search_vectors(list(queries), qvectors, 100)
            stats = index.stats()
            rows.append(
                (
                    name,
                    f"inference-free, untrained head, threshold -{threshold:g}",
                    evaluate(qrels, run, [METRIC]).metrics[METRIC],
                    stats["terms_per_document"],
                    stats["flops"],
                    len(corpus) / seconds,
                )
            )
            print(rows[-1], flush=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"## Learned sparse: the untrained MiniLM start ({stamp})",
        "",
        machine_line(("torch", "transformers", "sentence-transformers", "bm25s")),
        "",
        "Inference-free (documents expanded by the bundled MiniLM with pretriever's identity MLM head, "
        "queries = corpus-IDF-weighted tokens), exact search, test split. Documents encoded once at the "
        "lowest threshold, the others derived exactly (benchmarks/sparse.py). No training yet.",
        "",
        f"| collection | encoder | {METRIC} | terms / document | FLOPS | encode docs/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, what, score, terms, flops, speed in rows:
        extra = " | | | |" if terms is None else f" | {terms:,.0f} | {flops:,.1f} | {speed:.1f} |"
        lines.append(f"| {name} | {what} | {score:.4f}" + extra)
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_append:
        record_section(section)


if __name__ == "__main__":
    main()
