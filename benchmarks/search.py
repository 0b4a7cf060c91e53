"""Dense search side by side: pretriever's exact and HNSW indexes against plain faiss, in one process.

    python benchmarks/search.py [--datasets scifact] [--limit N] [--synthetic-size 1000000]
                                [--synthetic-queries 1000] [--repeats 5] [--no-append]

Why this script exists: pretriever's dense indexes are its own chunked exact search
(``FlatIndex``, ``exact_search``: bounded memory over memory-mapped vectors) and a wrapper over
faiss (``FaissIndex``). Neither may tax its users: the table shows pretriever queries/s over
faiss queries/s for the same output (target >= 1.0 for the HNSW wrapper; for exact search faiss
is the bar to be measured against), and the recall each gives.

Two sets, k = 100:
(a) real: each dataset's corpus encoded with the bundled all-MiniLM-L6-v2 (pretriever's
    ``FlatIndex.build``), its test queries with the same encoder. The vectors are cached under
    /tmp/pretriever-bench/ keyed by dataset, corpus checksum, model weights checksum and document
    count, so reruns skip encoding (the output says which). ``--limit N`` keeps the first N
    documents (a quick check; Recall@100 then counts the relevant documents left out as misses).
(b) synthetic: ``--synthetic-size`` unit-normalised float32 gaussian vectors of 384 dimensions
    (seed 0, generated once into a .npy under /tmp/pretriever-bench/ and memory-mapped) and
    ``--synthetic-queries`` gaussian queries (seed [0, 1]). pretriever's exact search reads the
    memory-mapped file (its bounded-memory path); faiss holds a copy in RAM, as it must. Random
    gaussian vectors are the hardest case for HNSW (no cluster structure, nearly equal distances),
    so recall there is a lower bound, not what real embeddings get.

Systems, written the way each library's users would write them:
- exact: pretriever ``exact_search(queries, docs, k)`` (arrays) and
  ``FlatIndex.from_vectors(...).search_vectors(qids, queries, k)`` (a {qid: {doc id: score}} run);
  faiss ``IndexFlatIP`` ``.search`` (arrays), and the same plus the run dict built the plain way.
- hnsw: pretriever ``FaissIndex.from_vectors(..., index_type="hnsw")`` with its defaults, then
  ``search_vectors`` (run); faiss ``IndexHNSWFlat`` with the same M, efConstruction and efSearch
  (pretriever searches with efSearch = max(ef_search, k)), arrays and run.
The ratio column compares each pretriever row with the faiss row of the same method and output.

What is timed: building each index once (pretriever first, then faiss; for HNSW, the whole
``from_vectors`` / ``add``, including pretriever's copy of the vectors and its doc-id table), and
searching every query in one call. Each search runs once untimed (page cache, BLAS start-up),
then ``--repeats`` timed times, interleaved across systems with the order reversed on every other
repeat; the best (min) is reported. Encoding and loading vectors are not timed.

Quality: Recall@100 and nDCG@10 against the test qrels (real sets, ``pretriever.evaluation``),
and for every row the mean overlap of its top-100 with pretriever's exact top-100.

Unless --no-append, a dated section (machine, versions, command, table) replaces this benchmark's
section of benchmarks/RESULTS.md (written atomically; see _common.record_section).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
from _common import RESULTS, command, cores, cpu_model, record_section, version

from pretriever.data.corpus import Corpus
from pretriever.indexes.ann import FaissIndex
from pretriever.indexes.dense import FlatIndex, exact_search

REPO = Path(__file__).resolve().parent.parent

DEFAULT_DATA = REPO.parent / "shared" / "datasets"
DATA_ENV = "PRETRIEVER_DATA"
CACHE = Path(tempfile.gettempdir()) / "pretriever-bench"

K = 100
SPLIT = "test"
METRICS = ("Recall@100", "nDCG@10")
DIM = 384
SEED = 0
GEN_ROWS = 65_536  # synthetic vectors are generated and written in blocks of this many rows
LIBRARIES = ("pretriever", "faiss-cpu", "numpy", "torch", "sentence-transformers", "ranx")

Run = dict[str, dict[str, float]]


# -- the vector sets ------------------------------------------------------------------------------
@dataclass
class VectorSet:
    name: str
    corpus: Corpus
    docs: np.ndarray  # in RAM, float32, C-contiguous
    queries: np.ndarray
    qids: list[str]
    encoder: Any  # what from_vectors records in the manifest
    docs_mmap: np.ndarray | None = None  # the same vectors memory-mapped (synthetic set)
    qrels: dict[str, dict[str, int]] | None = None
    notes: list[str] = field(default_factory=list)


class SyntheticEncoder:
    """Stands in for an encoder over synthetic vectors: ``from_vectors`` only records ``spec()``."""

    kind: ClassVar[str] = "encoder.synthetic"

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": f"gaussian seed {SEED}", "dim": DIM, "normalize": True,
                "similarity": "cosine"}

    def encode_queries(self, texts: Any) -> np.ndarray:
        raise NotImplementedError("synthetic vectors have no text")

    encode_documents = encode_queries


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _subset(corpus: Corpus, limit: int | None) -> Corpus:
    if limit is None or limit >= len(corpus):
        return corpus
    return Corpus(corpus.ids[:limit], corpus.titles[:limit], corpus.texts[:limit], source=corpus.source)


def real_set(name: str, limit: int | None) -> VectorSet:
    """A dataset's corpus and test queries encoded with the bundled MiniLM, cached under /tmp."""
    from pretriever.data import load_dataset
    from pretriever.encoders.dense import DenseEncoder

    dataset = load_dataset(name, download=False)
    full = dataset.corpus
    corpus = _subset(full, limit)
    queries = dataset.split_queries(SPLIT)
    qids = list(queries)
    encoder = DenseEncoder("minilm", batch_size=32)
    # loads the model and hashes its weights now, not inside a timed build; keys the cache too
    weights = encoder.spec()["weights_sha256"] or "unknown"
    key = f"{dataset.name}-{(full.sha256 or 'nochecksum')[:12]}-minilm-{weights[:12]}"
    doc_path = CACHE / f"{key}-{len(corpus)}docs.npy"
    query_path = CACHE / f"{key}-{SPLIT}-{len(qids)}queries.npy"
    notes = []
    if doc_path.is_file():
        notes.append(f"document vectors read from the cache {doc_path} (delete it to encode again)")
    else:
        print(f"{name}: encoding {len(corpus):,} documents (cached afterwards in {doc_path})", flush=True)
        start = time.perf_counter()
        vectors = FlatIndex(encoder, progress=False).build(corpus).vectors
        _save_atomic(doc_path, vectors)
        notes.append(f"document vectors encoded in this run ({time.perf_counter() - start:.0f} s, not "
                     f"timed) and cached in {doc_path}")
    if query_path.is_file():
        notes.append(f"query vectors read from the cache {query_path}")
    else:
        _save_atomic(query_path, encoder.encode_queries([queries[q] for q in qids]))
        notes.append(f"query vectors encoded in this run and cached in {query_path}")
    docs = np.load(doc_path)
    label = f"{name}" + (f" (first {len(corpus):,} docs)" if len(corpus) < len(full) else "")
    return VectorSet(label, corpus, docs, np.load(query_path), qids, encoder,
                     qrels=dataset.qrels(SPLIT), notes=[f"{label}: {n}" for n in notes])


def _unit_gaussian(rng: np.random.Generator, rows: int) -> np.ndarray:
    block = rng.standard_normal((rows, DIM), dtype=np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    return block


def synthetic_set(size: int, n_queries: int) -> VectorSet:
    """Unit gaussian vectors, generated once in blocks into a memory-mapped .npy under /tmp."""
    path = CACHE / f"synthetic-{size}x{DIM}-seed{SEED}.npy"
    if path.is_file():
        note = f"vectors read from the cache {path}"
    else:
        print(f"synthetic: generating {size:,} x {DIM} vectors into {path}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(size, DIM))
        rng = np.random.default_rng(SEED)
        for start in range(0, size, GEN_ROWS):
            out[start : start + GEN_ROWS] = _unit_gaussian(rng, min(GEN_ROWS, size - start))
        out.flush()
        del out
        os.replace(tmp, path)
        note = f"vectors generated in this run and cached in {path}"
    mmap = np.load(path, mmap_mode="r")
    queries = _unit_gaussian(np.random.default_rng([SEED, 1]), n_queries)
    n = len(mmap)
    corpus = Corpus([str(i) for i in range(n)], [""] * n, [""] * n)
    label = f"synthetic {n:,}"
    return VectorSet(label, corpus, np.array(mmap), queries, [f"q{i}" for i in range(n_queries)],
                     SyntheticEncoder(), docs_mmap=mmap,
                     notes=[f"{label}: {n:,} x {DIM} unit gaussian float32 (seed {SEED}), "
                            f"{n_queries:,} queries (seed [{SEED}, 1]); {note}"])


# -- the systems ----------------------------------------------------------------------------------
@dataclass
class Row:
    dataset: str
    method: str  # "exact" or "hnsw"
    system: str
    library: str  # "pretriever" or "faiss"
    output: str  # "arrays" or "run"
    vectors: str  # where the searched vectors live: "RAM", "memmap", "faiss"
    search: Callable[[], Any]
    build_s: float | None = None
    times: list[float] = field(default_factory=list)
    result: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    overlap: float | None = None
    n_queries: int = 0

    @property
    def qps(self) -> float:
        return self.n_queries / min(self.times)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()  # a collection left over from the previous system should not land in this timing
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def faiss_run(index: Any, queries: np.ndarray, qids: list[str], doc_ids: list[str]) -> Run:
    """faiss search plus the run dict, the plain way."""
    scores, ids = index.search(queries, K)
    return {qid: {doc_ids[j]: s for j, s in zip(ids[i].tolist(), scores[i].tolist()) if j >= 0}
            for i, qid in enumerate(qids)}


def exact_rows(vs: VectorSet) -> tuple[list[Row], Any]:
    """pretriever's exact search and faiss IndexFlatIP; returns the rows and the faiss index."""
    searched = vs.docs_mmap if vs.docs_mmap is not None else vs.docs
    where = "memmap" if vs.docs_mmap is not None else "RAM"
    build_ours, flat = _timed(lambda: FlatIndex.from_vectors(searched, vs.corpus, vs.encoder))
    build_faiss, index = _timed(lambda: _faiss_flat(vs.docs))
    doc_ids = vs.corpus.ids
    q, qids = vs.queries, vs.qids
    rows = [Row(vs.name, "exact", "exact_search", "pretriever", "arrays", where,
                lambda: exact_search(q, searched, K))]
    if vs.docs_mmap is not None:  # the same search over the vectors in RAM: what the memmap costs
        rows.append(Row(vs.name, "exact", "exact_search", "pretriever", "arrays", "RAM",
                        lambda: exact_search(q, vs.docs, K)))
    rows += [
        Row(vs.name, "exact", "FlatIndex.search_vectors", "pretriever", "run", where,
            lambda: flat.search_vectors(qids, q, K), build_s=build_ours),
        Row(vs.name, "exact", "IndexFlatIP.search", "faiss", "arrays", "faiss",
            lambda: index.search(q, K), build_s=build_faiss),
        Row(vs.name, "exact", "IndexFlatIP.search + run dict", "faiss", "run", "faiss",
            lambda: faiss_run(index, q, qids, doc_ids)),
    ]
    return rows, index


def _faiss_flat(docs: np.ndarray) -> Any:
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    return index


def hnsw_rows(vs: VectorSet) -> tuple[list[Row], str]:
    print(f"{vs.name}: building HNSW (pretriever)", flush=True)
    build_ours, ours = _timed(lambda: FaissIndex.from_vectors(vs.docs, vs.corpus, vs.encoder,
                                                              index_type="hnsw", progress=False))
    m, ef_construction, ef_search = ours.m, ours.ef_construction, max(ours.ef_search, K)
    print(f"{vs.name}: building HNSW (faiss), {build_ours:.1f} s for pretriever's", flush=True)

    def build() -> Any:
        index = faiss.IndexHNSWFlat(vs.docs.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(vs.docs)
        index.hnsw.efSearch = ef_search
        return index

    build_faiss, index = _timed(build)
    doc_ids = vs.corpus.ids
    q, qids = vs.queries, vs.qids
    params = f"M={m}, efConstruction={ef_construction}, efSearch={ef_search}"
    return [
        Row(vs.name, "hnsw", "FaissIndex(hnsw).search_vectors", "pretriever", "run", "faiss",
            lambda: ours.search_vectors(qids, q, K), build_s=build_ours),
        Row(vs.name, "hnsw", "IndexHNSWFlat.search", "faiss", "arrays", "faiss",
            lambda: index.search(q, K), build_s=build_faiss),
        Row(vs.name, "hnsw", "IndexHNSWFlat.search + run dict", "faiss", "run", "faiss",
            lambda: faiss_run(index, q, qids, doc_ids)),
    ], params


def measure(rows: list[Row], repeats: int) -> None:
    """One untimed search per row, then ``repeats`` interleaved timed ones (order reversed every other)."""
    for row in rows:
        row.result = row.search()
        row.n_queries = len(row.result) if isinstance(row.result, dict) else len(row.result[0])
    for r in range(repeats):
        for row in rows if r % 2 == 0 else rows[::-1]:
            seconds, _ = _timed(row.search)
            row.times.append(seconds)
    for row in rows:
        print(f"  {row.method:<5} {row.library:<10} {row.system:<32} {row.output:<6} {row.vectors:<6} "
              f"best {min(row.times):.4f} s, {row.qps:,.0f} queries/s", flush=True)


# -- quality --------------------------------------------------------------------------------------
def _ids_scores(row: Row) -> tuple[np.ndarray, np.ndarray]:
    """(positions, scores) of an 'arrays' result: pretriever returns (ids, scores), faiss (scores, ids)."""
    return (row.result[1], row.result[0]) if row.library == "faiss" else row.result


def _positions(row: Row, vs: VectorSet) -> list[set[int]]:
    if isinstance(row.result, dict):
        where = vs.corpus.positions
        return [{where[d] for d in row.result.get(q, {})} for q in vs.qids]
    ids, _ = _ids_scores(row)
    return [{int(j) for j in r if j >= 0} for r in ids]


def _as_run(row: Row, vs: VectorSet) -> Run:
    if isinstance(row.result, dict):
        return row.result
    ids, scores = _ids_scores(row)
    doc_ids = vs.corpus.ids
    return {q: {doc_ids[j]: s for j, s in zip(ids[i].tolist(), scores[i].tolist()) if j >= 0}
            for i, q in enumerate(vs.qids)}


def score(rows: list[Row], vs: VectorSet, exact: list[set[int]]) -> None:
    """Recall@100 / nDCG@10 against the qrels (real sets) and overlap with the exact top-100."""
    from pretriever.evaluation import evaluate

    for row in rows:
        found = _positions(row, vs)
        row.overlap = float(np.mean([len(f & e) / max(1, len(e)) for f, e in zip(found, exact)]))
        if vs.qrels is not None:
            row.metrics = evaluate(vs.qrels, _as_run(row, vs), list(METRICS)).metrics


def memory_note(vs: VectorSet) -> str:
    """Peak numpy memory (tracemalloc) of one exact_search over the memory-mapped vectors."""
    assert vs.docs_mmap is not None
    gc.collect()
    tracemalloc.start()
    try:
        exact_search(vs.queries, vs.docs_mmap, K)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (f"{vs.name}: one exact_search over the memory-mapped vectors ({vs.docs_mmap.nbytes / 2**20:,.0f} "
            f"MiB on disk) peaks at {peak / 2**20:,.0f} MiB of numpy memory for {len(vs.queries):,} queries "
            "(tracemalloc, untimed run)")


def bench_set(vs: VectorSet, repeats: int) -> tuple[list[Row], list[str]]:
    print(f"{vs.name}: {len(vs.docs):,} x {vs.docs.shape[1]} vectors, {len(vs.queries):,} queries",
          flush=True)
    notes = list(vs.notes)
    rows, flat = exact_rows(vs)
    measure(rows, repeats)
    exact = _positions(rows[0], vs)
    score(rows, vs, exact)
    del flat
    for row in rows:
        row.search, row.result = _dropped, None  # frees faiss's copy of the vectors
    gc.collect()
    if vs.docs_mmap is not None:
        notes.append(memory_note(vs))
    hnsw, params = hnsw_rows(vs)
    measure(hnsw, repeats)
    score(hnsw, vs, exact)
    for row in hnsw:
        row.search, row.result = _dropped, None
    gc.collect()
    notes.append(f"{vs.name}: HNSW parameters (pretriever's defaults, copied to faiss): {params}")
    rows += hnsw
    return rows, notes


def _dropped() -> None:
    raise RuntimeError("this row's index was freed")


# -- reporting ------------------------------------------------------------------------------------
def _peer(rows: list[Row], row: Row) -> Row | None:
    return next((p for p in rows if p.dataset == row.dataset and p.method == row.method
                 and p.library == "faiss" and p.output == row.output), None)


def table(rows: list[Row]) -> str:
    lines = ["| set | method | library | system | output | vectors | build s | search s | queries/s | "
             "q/s pretriever/faiss | Recall@100 | nDCG@10 | overlap with exact top-100 |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peer = _peer(rows, r)
        ratio = f"{r.qps / peer.qps:.2f}" if r.library == "pretriever" and peer else "(peer)"
        build = f"{r.build_s:.2f}" if r.build_s is not None else ""
        metrics = [f"{r.metrics[m]:.4f}" if m in r.metrics else "-" for m in METRICS]
        lines.append(f"| {r.dataset} | {r.method} | {r.library} | {r.system} | {r.output} | {r.vectors} | "
                     f"{build} | {min(r.times):.4f} | {r.qps:,.0f} | {ratio} | {' | '.join(metrics)} | "
                     f"{r.overlap:.4f} |")
    return "\n".join(lines)


def summary_lines(rows: list[Row]) -> list[str]:
    out = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        mine = [r for r in rows if r.dataset == dataset]
        parts = []
        for method in ("exact", "hnsw"):
            for output in ("arrays", "run"):
                ours = next((r for r in mine if (r.method, r.library, r.output) ==
                             (method, "pretriever", output)), None)
                peer = _peer(rows, ours) if ours else None
                if ours and peer:
                    parts.append(f"{method} {output} q/s pretriever/faiss {ours.qps / peer.qps:.2f}"
                                 + (f" (pretriever over {ours.vectors})" if method == "exact" else ""))
        ours_build = next(r for r in mine if (r.method, r.library) == ("hnsw", "pretriever"))
        faiss_build = next(r for r in mine if (r.method, r.library, r.output) == ("hnsw", "faiss", "arrays"))
        assert ours_build.build_s is not None and faiss_build.build_s is not None
        parts.append(f"HNSW build {ours_build.build_s:.2f} s vs faiss {faiss_build.build_s:.2f} s "
                     f"(speed pretriever/faiss {faiss_build.build_s / ours_build.build_s:.2f})")
        exact = next(r for r in mine if (r.method, r.library, r.output) == ("exact", "pretriever", "run"))
        if exact.metrics.get("Recall@100"):
            parts.append("HNSW Recall@100 / exact Recall@100 = "
                         f"{ours_build.metrics['Recall@100'] / exact.metrics['Recall@100']:.4f}")
        parts.append(f"HNSW top-100 overlap with exact {ours_build.overlap:.4f}")
        out.append(f"{dataset}: " + "; ".join(parts))
    return out


def _threads() -> str:
    """Thread pools as the process sees them (torch is imported here, after the timings, if not yet)."""
    import torch

    parts = [f"torch {torch.get_num_threads()}", f"faiss OpenMP {faiss.omp_get_max_threads()}"]
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool["user_api"] == "blas":
                owner = Path(pool["filepath"]).parent.name.removesuffix(".libs")
                parts.append(f"{pool['internal_api']} {pool.get('version')} ({owner}) {pool['num_threads']}")
    return ", ".join(parts)


def machine_lines(load: tuple[float, float, float], data_note: str) -> list[str]:
    versions = ", ".join(f"{lib} {version(lib)}" for lib in LIBRARIES)
    return [
        f"- Machine: {cpu_model()}, {cores()} cores available to the process "
        f"(os.sched_getaffinity), threads: {_threads()}; load average {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} at start; {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); {versions}",
        f"- Command: `{command()}` ({data_note})",
    ]


def method_line(repeats: int) -> str:
    return (
        f"- Method: k={K}, inner product of unit vectors, every query in one call. Builds timed once "
        "each (pretriever first); searches: one untimed run each, then best (min) of "
        f"{repeats} interleaved repeats (order reversed every other repeat). 'arrays' = (ids, scores) "
        "matrices; 'run' = {qid: {doc id: score}}. q/s pretriever/faiss compares rows of the same "
        "method and output (>= 1: pretriever at least as fast). Overlap = mean |top-100 ∩ exact "
        "top-100| / 100 against pretriever's exact_search. 'memmap': the .npy file read through "
        "np.memmap, in the page cache after the untimed run. Encoding, vector generation and "
        "loading are not timed."
    )


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["scifact"],
                        help="dataset names under $PRETRIEVER_DATA, or paths to BEIR folders "
                             "(give none to skip the real sets)")
    parser.add_argument("--limit", type=_count(K), default=None,
                        help=f"keep the first N documents of each dataset (quick check; N >= {K})")
    parser.add_argument("--synthetic-size", type=_count(0), default=1_000_000,
                        help=f"synthetic vectors (0 skips the synthetic set; otherwise >= {K})")
    parser.add_argument("--synthetic-queries", type=_count(1), default=1_000,
                        help="synthetic queries")
    parser.add_argument("--repeats", type=_count(1), default=5,
                        help="timed repeats per search; the best (min) is reported")
    parser.add_argument("--no-append", action="store_true",
                        help="print the table only; do not write RESULTS.md")
    args = parser.parse_args(argv)
    if 0 < args.synthetic_size < K:
        parser.error(f"--synthetic-size must be 0 or at least {K}")

    if os.environ.get(DATA_ENV, "").strip():
        data_note = f"{DATA_ENV}={os.environ[DATA_ENV]}"
    else:
        os.environ[DATA_ENV] = str(DEFAULT_DATA)
        data_note = f"{DATA_ENV} unset, so ../shared/datasets relative to the repository root"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder: never wait on the network
    data_note += f"; HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}; vector cache {CACHE}"

    load = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    rows: list[Row] = []
    notes: list[str] = []
    sets: list[Callable[[], VectorSet]] = [lambda n=name: real_set(n, args.limit) for name in args.datasets]
    if args.synthetic_size:
        sets.append(lambda: synthetic_set(args.synthetic_size, args.synthetic_queries))
    for make in sets:
        vs = make()
        set_rows, set_notes = bench_set(vs, args.repeats)
        rows += set_rows
        notes += set_notes
        del vs
        gc.collect()

    body = "\n".join([
        *machine_lines(load, data_note),
        method_line(args.repeats),
        "",
        table(rows),
        "",
        *(f"- {line}" for line in notes + summary_lines(rows)),
    ])
    print()
    print(body)
    if not args.no_append:
        title = f"## Dense search: pretriever vs faiss ({started:%Y-%m-%d %H:%M} UTC)"
        record_section(f"{title}\n\n{body}")
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
