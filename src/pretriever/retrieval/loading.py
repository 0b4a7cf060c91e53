"""Loading any index folder by the kind its manifest records.

It lives above both layers it loads from: the indexes (BM25, dense, FAISS) and the pipeline that
holds indexes, so that no index module has to name the layer above it.
"""

from __future__ import annotations

from pathlib import Path

from pretriever._manifest import read_manifest
from pretriever.errors import ManifestError
from pretriever.indexes.base import Index


def index_classes() -> dict[str, type]:
    """Index kind -> the class that loads it (imported here, on first use: faiss is an extra)."""
    from pretriever.indexes.ann import FaissIndex
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.retrieval.pipeline import Pipeline

    return {cls.kind: cls for cls in (BM25Index, FlatIndex, FaissIndex, Pipeline)}


def load_index(path: str | Path) -> Index:
    """Load any index folder, choosing the implementation from its manifest's kind."""
    manifest = read_manifest(path, kind="index.", verify=False)
    classes = index_classes()
    cls = classes.get(manifest["kind"])
    if cls is None:
        raise ManifestError(
            f"{path} holds an index of kind '{manifest['kind']}', which this pretriever does not "
            f"know (known: {', '.join(sorted(classes))}); upgrade pretriever"
        )
    return cls.load(path)
