"""Corpus encoding speed and quality of every inference path, side by side in one run.

Peers: plain ``SentenceTransformer.encode`` in fp32 (the baseline), the same model cast to bf16,
and sentence-transformers' own OpenVINO int8 export where it installs. pretriever: the resumable
encoding job (``encode_shard`` + ``assemble``, what ``pretriever index dense`` runs) on each
backend: torch fp32 / bf16, OpenVINO f32 / bf16 / int8 (int8 made by ``optimize`` with 300
calibration documents of the same corpus, its one-time cost reported apart).

For each path: docs/s over the whole corpus (title + text, batch 32, max 256 tokens), nDCG@10 on
the test split (queries encoded by the same path, exact search), and the mean cosine of its
document vectors to the fp32 baseline's. Writes its section of benchmarks/RESULTS.md.

    python benchmarks/encode.py [--dataset scifact] [--limit N] [--no-append]
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


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)


def st_systems(model_path: str) -> dict[str, tuple[Callable, Callable] | str]:
    """name -> (encode documents, encode queries), or the reason the path is unavailable."""
    import torch
    from sentence_transformers import SentenceTransformer

    fp32 = SentenceTransformer(model_path, device="cpu")
    bf16 = SentenceTransformer(model_path, device="cpu").to(torch.bfloat16)

    def enc(m):
        return lambda texts: _normalise(m.encode(texts, batch_size=BATCH, show_progress_bar=False))

    out: dict[str, tuple[Callable, Callable] | str] = {
        "sentence-transformers fp32": (enc(fp32), enc(fp32)),
        "sentence-transformers bf16": (enc(bf16), enc(bf16)),
    }
    try:
        import optimum.intel  # noqa: F401  (what ST's OpenVINO export needs)

        reason = ("optimum-intel is installed, but ST's static int8 export calibrates on a hub "
                  "dataset, which cannot be fetched offline")
    except ImportError as exc:
        reason = (f"not installed: ST's OpenVINO export needs optimum-intel ({exc}); optimum pins "
                  "transformers below the 5.x that sentence-transformers 6 needs")
    out["sentence-transformers OpenVINO int8"] = f"unavailable: {reason}"
    return out


def pretriever_system(model: str, backend: str, precision: str, corpus) -> tuple[Callable, Callable, str]:
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.encoding import assemble, encode_shard

    encoder = DenseEncoder(model, backend=backend, precision=precision, batch_size=BATCH)
    encoder.encode_documents(corpus.contents()[:BATCH])  # load + compile, not timed

    def documents(_texts):
        work = Path(tempfile.mkdtemp(prefix="bench-encode-"))
        try:
            encode_shard(encoder, corpus, work, progress=False)
            assemble(work, work / "v.npy")
            return np.load(work / "v.npy")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return documents, encoder.encode_queries, "/".join(encoder.resolved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--limit", type=int, help="first N documents only (a quick check; no nDCG)")
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()

    from pretriever.data import Corpus, load_dataset
    from pretriever.encoders.backends import bundled_model_path
    from pretriever.evaluation import evaluate
    from pretriever.indexes.dense import exact_search
    from pretriever.optimize import optimize

    dataset = load_dataset(args.dataset)
    corpus = dataset.corpus
    if args.limit:
        corpus = Corpus(corpus.ids[: args.limit], corpus.titles[: args.limit], corpus.texts[: args.limit],
                        source=corpus.source, sha256=f"{corpus.sha256}-first{args.limit}")
    texts = corpus.contents()
    queries = dataset.split_queries("test")
    qrels = dataset.qrels("test")
    model_path = str(bundled_model_path())

    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    start = time.perf_counter()
    report = optimize("minilm", dataset.corpus, precision="int8", out=tmp / "minilm-int8", calibration=300,
                      check=200, corpus_name=dataset.name)
    optimize_s = time.perf_counter() - start

    systems: dict[str, tuple[Callable, Callable] | str] = dict(st_systems(model_path))
    labels: dict[str, str] = {}
    for name, (model, backend, precision) in {
        "pretriever torch fp32": ("minilm", "torch", "float32"),
        "pretriever torch bf16": ("minilm", "torch", "bfloat16"),
        "pretriever OpenVINO f32": ("minilm", "openvino", "float32"),
        "pretriever OpenVINO bf16": ("minilm", "openvino", "bfloat16"),
        "pretriever OpenVINO int8": (str(tmp / "minilm-int8"), "openvino", "int8"),
        "pretriever auto": ("minilm", "auto", "auto"),
    }.items():
        docs_fn, query_fn, labels[name] = pretriever_system(model, backend, precision, corpus)
        systems[name] = (docs_fn, query_fn)

    rows = []
    baseline: np.ndarray | None = None
    base_rate = None
    for name, system in systems.items():
        if isinstance(system, str):
            rows.append(f"| {name} | - | - | - | - | {system} |")
            print(name, system, flush=True)
            continue
        docs_fn, query_fn = system
        start = time.perf_counter()
        vectors = docs_fn(texts)
        seconds = time.perf_counter() - start
        rate = len(texts) / seconds
        if baseline is None:
            baseline, base_rate = vectors, rate
        cosine = float((vectors * baseline).sum(axis=1).mean())
        ndcg = "-"
        if not args.limit:
            qv = query_fn(list(queries.values()))
            idx, val = exact_search(np.asarray(qv, dtype=np.float32), vectors, 100)
            ids = np.asarray(corpus.ids, dtype=object)
            run = {q: dict(zip(ids[idx[i]].tolist(), val[i].tolist())) for i, q in enumerate(queries)}
            ndcg = f"{evaluate(qrels, run, ['nDCG@10']).metrics['nDCG@10']:.4f}"
        rows.append(f"| {name} | {rate:.1f} | {rate / base_rate:.2f} | {ndcg} | {cosine:.5f} | "
                    f"{labels.get(name, '')} |")
        print(rows[-1], flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    table = "\n".join(["| path | docs/s | x ST fp32 | nDCG@10 | mean cosine to ST fp32 | resolved |",
                       "|---|---:|---:|---:|---:|---|", *rows])
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## Encoding: every inference path on {dataset.name} ({when})", "",
        machine_line(LIBS),
        f"- Method: {len(texts):,} documents (title + text), batch {BATCH}, max 256 tokens, bundled "
        "all-MiniLM-L6-v2; one timed pass per path after model load and one warm-up batch (not "
        "timed); pretriever paths run the resumable job (encode_shard + assemble). nDCG@10: test "
        "queries encoded by the same path, exact search, k=100. int8: `optimize(..., "
        f"calibration=300, check=200)` took {optimize_s:.0f} s once (guard: mean cosine "
        f"{report.quality:.4f}, min {report.worst:.4f} on 200 other documents).",
        "", table,
    ])
    print(section)
    if not args.no_append:
        record_section(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
