"""Loading any index folder by the kind its manifest records.

It lives above both layers it loads from: the indexes (BM25, dense, FAISS, late interaction) and
the pipeline that holds indexes, so that no index module has to name the layer above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pretriever._manifest import read_manifest
from pretriever.errors import ManifestError
from pretriever.indexes.base import Index


def index_classes() -> dict[str, type]:
    """Index kind -> the class that loads it (imported here, on first use: faiss is an extra)."""
    from pretriever.indexes.ann import FaissIndex
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.indexes.late_interaction import MaxSimIndex
    from pretriever.indexes.plaid import PlaidIndex
    from pretriever.indexes.sparse import SeismicSparseIndex, SparseIndex
    from pretriever.retrieval.pipeline import Pipeline

    return {cls.kind: cls for cls in (BM25Index, FlatIndex, FaissIndex, MaxSimIndex, PlaidIndex, SparseIndex,
                                      SeismicSparseIndex, Pipeline)}


def load_index(path: str | Path) -> Index:
    """Load any index folder, choosing the implementation from its manifest's kind; a folder that
    has taken updates (``retrieval/live.py``) is read at its latest acknowledged state."""
    from pretriever.retrieval.live import current_index, has_updates

    if has_updates(path):
        return current_index(path)
    return load_plain_index(path)


def load_plain_index(path: str | Path) -> Index:
    """Load the index saved in ``path`` itself, ignoring any updates beside it."""
    manifest = read_manifest(path, kind="index.", verify=False)
    classes = index_classes()
    cls = classes.get(manifest["kind"])
    if cls is None:
        raise ManifestError(
            f"{path} holds an index of kind '{manifest['kind']}', which this pretriever does not "
            f"know (known: {', '.join(sorted(classes))}); upgrade pretriever"
        )
    return cls.load(path)


def load_reranker(path: str | Path, *, backend: str = "auto", precision: str = "auto",
                  batch_size: int | None = None) -> Any:
    """A rerank stage from a folder: a cross-encoder, or a late-interaction index (MaxSim over the
    candidates' stored token vectors)."""
    from pretriever.encoders.cross import Reranker

    path = Path(path)
    if (path / "manifest.json").is_file():
        kind = read_manifest(path, verify=False)["kind"]
        if kind.startswith("index.late-interaction"):
            index = load_index(path)
            if (backend, precision) != ("auto", "auto"):
                from pretriever.encoders.colbert import colbert_from_spec

                index.set_query_encoder(colbert_from_spec(index.encoder_spec(), backend=backend,
                                                          precision=precision))
            return index
    return Reranker.load(path, backend=backend, precision=precision, batch_size=batch_size)


def check_reranker(reranker: Any, dataset: Any, path: str | Path) -> None:
    """A late-interaction rerank stage reads its own stored vectors, not the dataset's texts: refuse
    one built from another corpus."""
    if not getattr(reranker, "reads_texts", True):
        from pretriever.retrieval.spec import check_same_corpus

        check_same_corpus(reranker, dataset, Path(path))
