"""Resolve a retriever spec and produce its run: the one place that knows what a spec can be.

A spec is a built-in retriever built on the fly over the dataset's corpus ("bm25", "dense",
"hybrid"), an index or pipeline folder written by pretriever (searched; refused if built from
another corpus), or a TREC run file (read as is). ``evaluate --retriever`` and every later stage's
``--first-stage`` (training negatives, reranking) go through ``retrieve``.
"""

from __future__ import annotations

from pathlib import Path

from pretriever.data.dataset import Dataset
from pretriever.errors import ConfigError, DataNotFoundError
from pretriever.indexes.base import Index
from pretriever.types import Queries, Run

RETRIEVER_NAMES = ("bm25", "dense", "hybrid")


def build_named(name: str, dataset: Dataset, *, model: str = "minilm", progress: bool = True,
                work_dir: str | Path | None = None, backend: str = "auto",
                precision: str = "auto") -> Index:
    """Build one of the built-in retrievers over ``dataset``'s corpus.

    "hybrid" is BM25 + dense fused by a min-max normalised weighted sum (0.5 / 0.5).
    """
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.retrieval.pipeline import Pipeline

    if name == "bm25":
        return BM25Index(progress=progress).build(dataset.corpus)
    if name == "dense":
        encoder = DenseEncoder(model, backend=backend, precision=precision)
        return FlatIndex(encoder, progress=progress, work_dir=work_dir).build(dataset.corpus)
    if name == "hybrid":
        members = {"bm25": build_named("bm25", dataset, progress=progress),
                   "dense": build_named("dense", dataset, model=model, progress=progress,
                                        work_dir=work_dir, backend=backend, precision=precision)}
        return Pipeline(members)
    raise ConfigError(f"unknown retriever '{name}'; choose one of {', '.join(RETRIEVER_NAMES)}")


def check_same_corpus(index: Index, dataset: Dataset, path: Path) -> None:
    """Refuse an index built from another corpus than the dataset's."""
    info = getattr(index, "corpus_info", {}) or {}
    built_from = info.get("sha256")
    if built_from and dataset.corpus.sha256 and built_from != dataset.corpus.sha256:
        raise ConfigError(
            f"{path} was built from another corpus ({info.get('source')}) than "
            f"{dataset.name}'s ({dataset.corpus.source}); rebuild it with "
            f"`pretriever index ... --dataset {dataset.name}`"
        )


def _set_query_backend(index: Index, backend: str, precision: str) -> None:
    """Re-create the query encoder of every dense index (or pipeline member) on another backend."""
    from pretriever.encoders.dense import encoder_from_spec

    for member in getattr(index, "retrievers", {}).values():
        _set_query_backend(member, backend, precision)
    if hasattr(index, "set_query_encoder"):
        index.set_query_encoder(encoder_from_spec(index.encoder_spec(), backend=backend,
                                                  precision=precision))


def index_notes(index: Index) -> list[str]:
    """Notes an index (or a pipeline's members) reports about how it searches."""
    members = getattr(index, "retrievers", None)
    if members:
        return [f"{name}: {n}" for name, m in members.items() for n in index_notes(m)]
    return list(getattr(index, "notes", []))


def retrieve(
    dataset: Dataset, spec: str, *, queries: Queries | None = None, split: str = "test", k: int = 100,
    progress: bool = True, model: str = "minilm", backend: str = "auto", precision: str = "auto",
    work_dir: str | Path | None = None,
) -> tuple[Run, str, list[str]]:
    """Run retriever ``spec`` on ``queries`` (default: the judged queries of ``split``); return
    (run, name, notes). A run file is read whole, and refused when it answers none of the
    ``queries`` given."""
    from pretriever.retrieval.loading import load_index
    from pretriever.runs import read_run

    asked = queries
    path = Path(spec).expanduser()
    if queries is None and (spec in RETRIEVER_NAMES or path.is_dir()):  # a run file brings its own
        queries = dataset.split_queries(split)
    if spec in RETRIEVER_NAMES:
        index = build_named(spec, dataset, model=model, progress=progress, backend=backend,
                            precision=precision, work_dir=work_dir)
        return index.search(queries, k=k), spec, index_notes(index)
    if path.is_dir():
        index = load_index(path)
        check_same_corpus(index, dataset, path)
        if (backend, precision) != ("auto", "auto"):
            _set_query_backend(index, backend, precision)
        return index.search(queries, k=k), path.name, index_notes(index)
    if path.is_file():
        run, name = read_run(path)
        if asked and not any(q in run for q in asked):
            raise ConfigError(f"the run file {path} answers none of the {len(asked)} queries asked for "
                              f"(e.g. {', '.join(list(asked)[:3])}): was it made on another split or "
                              "dataset?")
        return run, name or path.stem, []
    raise DataNotFoundError(
        f"'{spec}' is neither a known retriever ({', '.join(RETRIEVER_NAMES)}), nor an index folder, "
        "nor a TREC run file"
    )
