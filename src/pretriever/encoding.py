"""Corpus encoding as a resumable, shardable job.

Why a job and not one ``encode()`` call: encoding a corpus is the slowest step of dense retrieval
(minutes on a laptop for 5k documents, hours for millions), so a killed run must resume where it
stopped, and several machines or GPUs must be able to encode parts of one corpus.

How:
- documents are sorted once by token length (longest first, so an out-of-memory error shows up
  in the first batch, not after an hour) and cut into batches of ``batch_size``;
- batch ``j`` belongs to shard ``j mod N``: shards get equal work, and every batch holds the same
  documents whether the corpus is encoded in one process or in N, so shard + merge gives exactly
  the single-process vectors;
- every ``chunk_batches`` batches, a chunk file (positions + vectors) is written atomically into
  ``work_dir/shard-I-of-N/``; on restart, finished chunks are skipped;
- ``assemble`` scatters every shard's chunks into one matrix in corpus order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pretriever._io import atomic_file, write_json
from pretriever._progress import Progress
from pretriever.data.corpus import Corpus
from pretriever.encoders.base import Encoder
from pretriever.errors import ConfigError, DataNotFoundError, PretrieverError

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based), parsed from "I/N" on the command line."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            left, right = text.split("/")
            shard = cls(int(left), int(right))
        except ValueError:
            raise ConfigError(f"--shard must look like I/N (e.g. 0/4), got '{text}'") from None
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ConfigError(f"--shard {text}: need 0 <= I < N")
        return shard

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"


def batch_plan(encoder: Encoder, corpus: Corpus, batch_size: int, texts: list[str] | None = None
               ) -> list[np.ndarray]:
    """Corpus positions of every batch, longest documents first (stable, so deterministic).

    ``texts`` is ``corpus.contents()`` when the caller already has it.
    """
    lengths_fn = getattr(encoder, "token_lengths", None)
    texts = corpus.contents() if texts is None else texts
    lengths = lengths_fn(texts) if lengths_fn else np.array([len(t) for t in texts])
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _job_spec(encoder: Encoder, corpus: Corpus, batch_size: int, dtype: str, shards: int,
              chunk_batches: int) -> dict[str, Any]:
    return {
        "encoder": encoder.spec(),
        "corpus": corpus.fingerprint(),
        "batch_size": batch_size,
        "dtype": dtype,
        "shards": shards,
        "chunk_batches": chunk_batches,  # a chunk file is skipped on resume: its extent must not move
    }


def _check_job(work_dir: Path, spec: dict[str, Any]) -> None:
    """Create ``job.json`` or make sure the existing one describes the same job."""
    path = work_dir / "job.json"
    if path.is_file():
        def comparable(job: dict[str, Any]) -> dict[str, Any]:
            corpus = job.get("corpus", {})  # the corpus's path may differ; its content may not
            return {**job, "corpus": (corpus.get("sha256"), corpus.get("documents"))}

        if comparable(json.loads(path.read_text(encoding="utf-8"))) != comparable(spec):
            raise ConfigError(
                f"{work_dir} holds an encoding job with other settings (encoder, corpus, batch "
                "size, dtype, shard count or chunk size); resume with the same settings, or delete "
                "the folder"
            )
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, spec)


def encode_shard(
    encoder: Encoder,
    corpus: Corpus,
    work_dir: str | Path,
    *,
    shard: Shard = Shard(),
    batch_size: int | None = None,
    chunk_batches: int = 16,
    dtype: str = "float32",
    progress: bool = True,
) -> Path:
    """Encode one shard's documents into ``work_dir``, resuming from finished chunks; return its folder.

    ``batch_size`` defaults to the encoder's own; it must be the same for every shard of a job.
    """
    if batch_size is None:
        batch_size = int(getattr(encoder, "batch_size", 32))
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
    if batch_size < 1 or chunk_batches < 1:
        raise ConfigError("batch_size and chunk_batches must be at least 1")
    work_dir = Path(work_dir)
    _check_job(work_dir, _job_spec(encoder, corpus, batch_size, dtype, shard.count, chunk_batches))
    folder = work_dir / shard.name
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "done.json").is_file():
        return folder
    texts = corpus.contents()
    batches = batch_plan(encoder, corpus, batch_size, texts)[shard.index :: shard.count]
    chunks = [batches[i : i + chunk_batches] for i in range(0, len(batches), chunk_batches)]
    todo = [c for c in range(len(chunks)) if not (folder / f"chunk-{c:06d}.npz").is_file()]
    total_docs = sum(len(b) for b in batches)
    done_docs = total_docs - sum(len(b) for c in todo for b in chunks[c])
    prompt = getattr(encoder, "prompts", {}).get("document", "")
    encode_batch = getattr(encoder, "encode_batch", None)
    multivector = bool(getattr(encoder, "multivector", False))
    started = time.perf_counter()
    desc = "encoding the corpus" if shard.count == 1 else f"encoding {shard.name}"
    with Progress(total_docs, desc, "docs", enabled=progress, initial=done_docs) as bar:
        for c in todo:
            positions = np.concatenate(chunks[c])
            parts = []
            for batch in chunks[c]:
                batch_texts = [texts[i] for i in batch]
                if multivector:
                    parts.append(encoder.encode_documents(batch_texts) if encode_batch is None
                                 else encode_batch(batch_texts, False))
                elif encode_batch is not None:
                    parts.append(encode_batch(batch_texts, prompt))
                else:
                    parts.append(encoder.encode_documents(batch_texts))
                bar.update(len(batch))
            extra = {}
            if multivector:  # one (tokens, dim) array per document: stored flat, with lengths
                docs = [v for part in parts for v in part]
                extra["lengths"] = np.array([len(v) for v in docs], dtype=np.int64)
                parts = docs
            vectors = np.concatenate(parts).astype(dtype, copy=False)
            with atomic_file(folder / f"chunk-{c:06d}.npz", "wb") as handle:
                np.savez(handle, positions=positions.astype(np.int64), vectors=vectors, **extra)
    write_json(folder / "done.json", {
        "documents": total_docs, "chunks": len(chunks),
        "seconds_this_run": round(time.perf_counter() - started, 2),
    })
    return folder


def _finished_job(work_dir: Path) -> dict[str, Any]:
    """The job spec of a work folder whose every shard is done; raises naming what is missing."""
    job_path = work_dir / "job.json"
    if not job_path.is_file():
        raise DataNotFoundError(f"{work_dir} is not an encoding work folder (no job.json)")
    job = json.loads(job_path.read_text(encoding="utf-8"))
    missing = [
        Shard(i, job["shards"]).name for i in range(job["shards"])
        if not (work_dir / Shard(i, job["shards"]).name / "done.json").is_file()
    ]
    if missing:
        raise PretrieverError(
            f"{work_dir}: shards not finished: {', '.join(missing)}; run the encoding with "
            f"--shard I/{job['shards']} for each of them, then merge"
        )
    return job


def _chunks(work_dir: Path, job: dict[str, Any]) -> list[Path]:
    return [chunk for i in range(job["shards"])
            for chunk in sorted((work_dir / Shard(i, job["shards"]).name).glob("chunk-*.npz"))]


def assemble(work_dir: str | Path, out_path: str | Path) -> tuple[dict[str, Any], int]:
    """Write every shard's vectors, in corpus order, to ``out_path`` (.npy); return (job spec, rows).

    Raises if a shard is missing or unfinished, naming the command that would finish it.
    """
    work_dir = Path(work_dir)
    job = _finished_job(work_dir)
    n_docs = int(job["corpus"]["documents"])
    dim = int(job["encoder"]["dim"])
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=job["dtype"], shape=(n_docs, dim))
    seen = np.zeros(n_docs, dtype=bool)
    for chunk in _chunks(work_dir, job):
        with np.load(chunk) as data:
            positions = data["positions"]
            out[positions] = data["vectors"]
            seen[positions] = True
    _check_seen(work_dir, seen)
    out.flush()
    del out
    return job, n_docs


def _check_seen(work_dir: Path, seen: np.ndarray) -> None:
    if not seen.all():
        raise PretrieverError(f"{work_dir}: {int((~seen).sum())} documents have no vector; "
                              "delete the work folder and encode again")


def assemble_tokens(work_dir: str | Path, tokens_path: str | Path) -> tuple[dict[str, Any], np.ndarray]:
    """Multi-vector jobs: write every document's token vectors, in corpus order, one after the other
    to ``tokens_path`` (.npy, memory-mapped while written); return (job spec, offsets), document
    ``i`` owning rows ``offsets[i]:offsets[i + 1]``."""
    work_dir = Path(work_dir)
    job = _finished_job(work_dir)
    n_docs = int(job["corpus"]["documents"])
    lengths = np.zeros(n_docs, dtype=np.int64)
    seen = np.zeros(n_docs, dtype=bool)
    chunks = _chunks(work_dir, job)
    for chunk in chunks:
        with np.load(chunk) as data:
            positions = data["positions"]
            lengths[positions] = data["lengths"]
            seen[positions] = True
    _check_seen(work_dir, seen)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out = np.lib.format.open_memmap(tokens_path, mode="w+", dtype=job["dtype"],
                                    shape=(int(offsets[-1]), int(job["encoder"]["dim"])))
    for chunk in chunks:
        with np.load(chunk) as data:
            vectors, start = data["vectors"], 0
            for position, length in zip(data["positions"], data["lengths"]):
                out[offsets[position] : offsets[position] + length] = vectors[start : start + length]
                start += length
    out.flush()
    del out
    return job, offsets
