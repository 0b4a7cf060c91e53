"""Resolve a retriever spec and produce its run: the one place that knows what a spec can be.

A spec is a built-in retriever built on the fly over the dataset's corpus ("bm25", "dense",
"colbert", "hybrid", or members joined by "+"), an index or pipeline folder written by
pretriever (searched; refused if built from another corpus), or a TREC run file (read as is).
``evaluate --retriever`` and every later stage's ``--first-stage`` (training negatives,
reranking) go through ``retrieve``.
"""

from __future__ import annotations

from pathlib import Path

from pretriever.data.dataset import Dataset
from pretriever.errors import ConfigError, DataNotFoundError
from pretriever.indexes.base import Index
from pretriever.types import Queries, Run

RETRIEVER_NAMES = ("bm25", "dense", "colbert", "hybrid", "hybrid+colbert")
MEMBERS = ("bm25", "dense", "colbert")


def members_of(spec: str) -> list[str]:
    """The built-in members a name stands for ("hybrid" = bm25 + dense); empty if it is not one."""
    parts = spec.replace("hybrid", "bm25+dense").split("+")
    return parts if all(p in MEMBERS for p in parts) and len(set(parts)) == len(parts) else []


def is_named(spec: str) -> bool:
    """A built-in retriever name, or several joined by '+' (fused), e.g. "bm25+colbert"."""
    return bool(members_of(spec))


def build_named(name: str, dataset: Dataset, *, model: str = "minilm", progress: bool = True,
                work_dir: str | Path | None = None, backend: str = "auto",
                precision: str = "auto") -> Index:
    """Build one of the built-in retrievers over ``dataset``'s corpus.

    "colbert" is late interaction over ``model``'s token vectors (zero-shot for a plain encoder) in
    a compressed PLAID index. Names joined by "+" are fused by a min-max normalised weighted sum
    with equal weights ("hybrid" = "bm25+dense"); in a fusion, colbert scores the union of the
    other members' candidates by MaxSim.
    """
    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.indexes.plaid import PlaidIndex
    from pretriever.retrieval.pipeline import Pipeline

    if not is_named(name):
        raise ConfigError(f"unknown retriever '{name}'; choose one of {', '.join(RETRIEVER_NAMES)} "
                          f"or members of {', '.join(MEMBERS)} joined by '+'")
    parts = members_of(name)
    if len(parts) > 1:
        return Pipeline({p: build_named(p, dataset, model=model, progress=progress, work_dir=work_dir,
                                        backend=backend, precision=precision) for p in parts})
    if name == "bm25":
        return BM25Index(progress=progress).build(dataset.corpus)
    work = None if work_dir is None else Path(work_dir) / name
    if name == "dense":
        encoder = DenseEncoder(model, backend=backend, precision=precision)
        return FlatIndex(encoder, progress=progress, work_dir=work).build(dataset.corpus)
    encoder = ColBERTEncoder(model, backend=backend, precision=precision)
    return PlaidIndex(encoder, progress=progress, work_dir=work).build(dataset.corpus)


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
    """Re-create the query encoder of every dense or late-interaction index (or pipeline member) on
    another backend."""
    from pretriever.encoders.colbert import colbert_from_spec
    from pretriever.encoders.dense import encoder_from_spec

    for member in getattr(index, "retrievers", {}).values():
        _set_query_backend(member, backend, precision)
    if hasattr(index, "set_query_encoder"):
        spec = index.encoder_spec()
        rebuild = colbert_from_spec if spec.get("kind") == "encoder.colbert" else encoder_from_spec
        index.set_query_encoder(rebuild(spec, backend=backend, precision=precision))


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
    if queries is None and (is_named(spec) or path.is_dir()):  # a run file brings its own
        queries = dataset.split_queries(split)
    if is_named(spec):
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
