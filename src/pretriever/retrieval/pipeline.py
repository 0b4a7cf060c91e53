"""A pipeline: several first-stage retrievers whose runs are fused, saved and searched as one index.

The folder holds each member index in ``retrievers/<name>/`` (each with its own manifest) and the
fusion settings in the pipeline's manifest, so a hybrid system is one artefact that can be
loaded, searched and evaluated like any index, and its members can still be used on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError, NotBuiltError
from pretriever.indexes.base import Index, load_index
from pretriever.retrieval.fusion import Fusion, fuse, tune_weights
from pretriever.types import Qrels, Queries, Run

FORMAT_VERSION = 1


class Pipeline:
    """Fuse the runs of named first-stage retrievers.

    ``depth`` is how many results each member returns before fusion (at least ``k``).
    """

    kind: ClassVar[str] = "index.pipeline"

    def __init__(self, retrievers: Mapping[str, Index], fusion: Fusion | None = None, *,
                 depth: int = 100) -> None:
        if not retrievers:
            raise ConfigError("a pipeline needs at least one retriever")
        for name in retrievers:
            if not name or "/" in name or name.startswith("."):
                raise ConfigError(f"retriever name '{name}' must be a plain folder name")
        self.retrievers = dict(retrievers)
        self.fusion = fusion or Fusion()
        self.depth = depth

    def __repr__(self) -> str:
        return f"Pipeline({list(self.retrievers)}, {self.fusion})"

    @property
    def is_built(self) -> bool:
        return all(getattr(r, "is_built", True) for r in self.retrievers.values())

    def build(self, corpus: Corpus) -> Pipeline:
        """Build every member that is not built yet (already built ones are reused)."""
        for retriever in self.retrievers.values():
            if not getattr(retriever, "is_built", False):
                retriever.build(corpus)
        return self

    def member_runs(self, queries: Queries, k: int = 100) -> list[Run]:
        """Each member's run at depth max(depth, k)."""
        if not self.is_built:
            raise NotBuiltError("this Pipeline has members that are not built: call build(corpus)")
        return [r.search(queries, k=max(self.depth, k)) for r in self.retrievers.values()]

    def search(self, queries: Queries, k: int = 100) -> Run:
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        runs = self.member_runs(queries, k)
        fused = fuse(runs, self.fusion, k=k)
        return {q: fused.get(q, {}) for q in queries}

    def tune(self, qrels: Qrels, queries: Queries, *, metric: str = "nDCG@10", step: float = 0.1,
             split: str | None = None) -> float:
        """Set wsum weights by grid search on a dev/train split; returns the tuned score there."""
        if split == "test":
            raise ConfigError("fusion weights must not be tuned on the test split; use train or dev")
        self.fusion, score = tune_weights(qrels, self.member_runs(queries), self.fusion, metric, step)
        return score

    @property
    def corpus_info(self) -> dict[str, Any]:
        first = next(iter(self.retrievers.values()))
        return dict(getattr(first, "corpus_info", {}))

    def params(self) -> dict[str, Any]:
        return {"fusion": self.fusion.to_dict(), "depth": self.depth, "members": list(self.retrievers)}

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the members under ``retrievers/`` and the fusion settings, atomically."""
        if not self.is_built:
            raise NotBuiltError("build the pipeline before saving it")
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            for name, retriever in self.retrievers.items():
                retriever.save(tmp / "retrievers" / name)
            write_manifest(tmp, kind=self.kind, format_version=FORMAT_VERSION, params=self.params(),
                           provenance={"corpus": self.corpus_info})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Load the pipeline and each member (members check their own manifests and checksums)."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION, verify=False)
        params = manifest["params"]
        members = {name: load_index(path / "retrievers" / name) for name in params["members"]}
        f = params["fusion"]
        fusion = Fusion(f["method"], f["norm"], tuple(f["weights"]) if f["weights"] else None, f["rrf_k"])
        return cls(members, fusion, depth=params["depth"])
