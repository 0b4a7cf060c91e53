"""Resolve what ``pretriever evaluate --retriever X`` names and produce its run.

X is a built-in retriever name ("bm25": built on the fly over the dataset's corpus), an index
folder written by pretriever (searched; refused if built from another corpus), or a TREC run file
(read as is). The same function serves the CLI and Python callers.
"""

from __future__ import annotations

from pathlib import Path

from pretriever.data.dataset import Dataset
from pretriever.errors import ConfigError, DataNotFoundError
from pretriever.types import Run

RETRIEVER_NAMES = ("bm25",)


def retrieve(
    dataset: Dataset, spec: str, *, split: str = "test", k: int = 100, progress: bool = True
) -> tuple[Run, str]:
    """Run retriever ``spec`` on the judged queries of ``split``; return (run, display name)."""
    from pretriever.indexes.base import load_index
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.runs import read_run

    queries = dataset.split_queries(split)
    if spec in RETRIEVER_NAMES:
        index = BM25Index(progress=progress).build(dataset.corpus)
        return index.search(queries, k=k), spec
    path = Path(spec).expanduser()
    if path.is_dir():
        index = load_index(path)
        built_from = getattr(index, "corpus_info", {}).get("sha256")
        if built_from and dataset.corpus.sha256 and built_from != dataset.corpus.sha256:
            raise ConfigError(
                f"{path} was built from another corpus ({index.corpus_info.get('source')}) than "
                f"{dataset.name}'s ({dataset.corpus.source}); rebuild it with "
                f"`pretriever index ... --dataset {dataset.name}`"
            )
        return index.search(queries, k=k), path.name
    if path.is_file():
        run, name = read_run(path)
        return run, name or path.stem
    raise DataNotFoundError(
        f"--retriever '{spec}' is neither a known retriever ({', '.join(RETRIEVER_NAMES)}), nor an "
        "index folder, nor a TREC run file"
    )
