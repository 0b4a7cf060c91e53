"""A pipeline: first-stage retrievers whose runs are fused, then optionally reranked by a
cross-encoder, saved and searched as one index.

The folder holds each member index in ``retrievers/<name>/`` (each with its own manifest), the
fusion and rerank settings in the pipeline's manifest, and, with a rerank stage, the reranker in
``reranker/`` and the document texts it reads in ``documents.jsonl``. So a multi-stage system is
one artefact that can be loaded, searched and evaluated like any index, and its parts can still
be used on their own.

Documents are added and deleted in every member at once (and in the texts a cross-encoder reads):
the pipeline's ``add``, ``delete`` and ``upsert`` are those of ``indexes/updates.py``, with each
member's payload under its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever.data.corpus import Corpus, read_corpus
from pretriever.encoders.cross import rerank_scores
from pretriever.errors import ConfigError, NotBuiltError, PretrieverError
from pretriever.indexes.base import Index
from pretriever.indexes.updates import Payload, Updatable, pack_json, unpack_json
from pretriever.retrieval.fusion import Fusion, fuse, tune_weights
from pretriever.retrieval.loading import load_index, load_reranker
from pretriever.runs import ranked_items
from pretriever.types import Qrels, Queries, Run

FORMAT_VERSION = 1
DOCUMENTS = "documents.jsonl"
LATE_INTERACTION = ("rescore", "search")


class Pipeline(Updatable):
    """Fuse the runs of named first-stage retrievers.

    ``depth`` is how many results each member returns before fusion (at least ``k``). With a
    ``reranker`` (a ``Reranker``), the fused top-``rerank_depth`` of each query is reordered by
    it, its scores mixed with the fused ones by ``interpolation`` (1.0 = the reranker alone; by
    default the reranker's own, tuned when it was trained; see ``rerank_scores``); the pipeline
    then keeps the corpus texts, given to ``build``.
    """

    kind: ClassVar[str] = "index.pipeline"

    def __init__(self, retrievers: Mapping[str, Index], fusion: Fusion | None = None, *,
                 depth: int = 100, reranker: Any = None, rerank_depth: int = 100,
                 interpolation: float | None = None, late_interaction: str = "rescore") -> None:
        if not retrievers:
            raise ConfigError("a pipeline needs at least one retriever")
        for name in retrievers:
            if not name or "/" in name or name.startswith("."):
                raise ConfigError(f"retriever name '{name}' must be a plain folder name")
        if late_interaction not in LATE_INTERACTION:
            raise ConfigError(f"late_interaction must be one of {', '.join(LATE_INTERACTION)}, "
                              f"got '{late_interaction}'")
        self.late_interaction = late_interaction
        self.retrievers = dict(retrievers)
        self.fusion = fusion or Fusion()
        self.depth = depth
        if rerank_depth < 1:
            raise ConfigError(f"rerank_depth must be at least 1, got {rerank_depth}")
        if interpolation is None:
            interpolation = float(getattr(reranker, "interpolation", 1.0))
        if not 0.0 <= interpolation <= 1.0:
            raise ConfigError(f"interpolation must be between 0 and 1, got {interpolation}")
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.interpolation = interpolation
        self.documents: Corpus | None = None

    def __repr__(self) -> str:
        rerank = f", rerank={self.reranker!r}@{self.rerank_depth}" if self.reranker else ""
        return f"Pipeline({list(self.retrievers)}, {self.fusion}{rerank})"

    @property
    def is_built(self) -> bool:
        members = all(getattr(r, "is_built", True) for r in self.retrievers.values())
        return members and (self.reranker is None or not self._reads_texts or self.documents is not None)

    def build(self, corpus: Corpus) -> Pipeline:
        """Build every member that is not built yet (already built ones are reused)."""
        for retriever in self.retrievers.values():
            if not getattr(retriever, "is_built", False):
                retriever.build(corpus)
        if self.reranker is not None and self._reads_texts:
            self.documents = corpus
        return self

    # -- updates: every member in step --------------------------------------------------------------
    def _parts(self) -> dict[str, Any]:
        """The members, and a late-interaction rerank stage (it stores the documents' vectors)."""
        parts = dict(self.retrievers)
        if self.reranker is not None and hasattr(self.reranker, "apply_add"):
            parts["reranker"] = self.reranker
        missing = [n for n, p in parts.items() if not hasattr(p, "apply_add")]
        if missing:
            raise ConfigError(f"pipeline member '{missing[0]}' ({type(parts[missing[0]]).__name__}) "
                              "cannot add or delete documents")
        return parts

    def _check_built(self) -> None:
        if not self.is_built:
            raise NotBuiltError("this Pipeline has members that are not built: call build(corpus)")

    def __len__(self) -> int:
        return len(next(iter(self.retrievers.values())))

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in next(iter(self.retrievers.values()))

    def positions(self) -> dict[str, int]:
        return next(iter(self.retrievers.values())).positions()

    @property
    def exact_updates(self) -> bool:  # type: ignore[override]
        return all(p.exact_updates for p in self._parts().values())

    def prepare_add(self, corpus: Corpus) -> Payload:
        payload = {f"{name}/{key}": value for name, part in self._parts().items()
                   for key, value in part.prepare_add(corpus).items()}
        if self.documents is not None:
            payload["documents"] = pack_json([[t, x] for t, x in zip(corpus.titles, corpus.texts)])
        return payload

    def apply_add(self, ids: list[str], payload: Payload) -> None:
        for name, part in self._parts().items():
            prefix = name + "/"
            part.apply_add(ids, {k[len(prefix):]: v for k, v in payload.items() if k.startswith(prefix)})
        if self.documents is not None and "documents" in payload:
            docs = self.documents
            fields = unpack_json(payload["documents"])
            self.documents = Corpus(docs.ids + list(ids), docs.titles + [f[0] for f in fields],
                                    docs.texts + [f[1] for f in fields])

    def apply_delete(self, ids: list[str]) -> None:
        for part in self._parts().values():
            part.apply_delete(ids)
        if self.documents is not None:
            gone = set(ids)
            docs = self.documents
            keep = [i for i, d in enumerate(docs.ids) if d not in gone]
            self.documents = Corpus([docs.ids[i] for i in keep], [docs.titles[i] for i in keep],
                                    [docs.texts[i] for i in keep])

    def copy_for_update(self) -> Pipeline | None:
        """A pipeline over copies of its members (None if one must be updated in place)."""
        import copy

        clones = {name: part.copy_for_update() for name, part in self._parts().items()}
        if any(c is None for c in clones.values()):
            return None
        clone = copy.copy(self)
        clone.retrievers = {name: clones[name] for name in self.retrievers}
        if "reranker" in clones:
            clone.reranker = clones["reranker"]
        return clone

    def begin_batch(self) -> None:
        for part in self._parts().values():
            part.begin_batch()

    def end_batch(self) -> None:
        for part in self._parts().values():
            part.end_batch()

    def compact(self) -> Pipeline:
        for part in self._parts().values():
            part.compact()
        return self

    @property
    def _reads_texts(self) -> bool:
        """A cross-encoder reads the documents' texts; a late-interaction index has its vectors."""
        return getattr(self.reranker, "reads_texts", True)

    def member_runs(self, queries: Queries, k: int = 100) -> list[Run]:
        """Each member's run at depth max(depth, k). With ``late_interaction="rescore"``, a
        late-interaction member scores the union of the other members' candidates by MaxSim
        instead of searching the corpus itself (measured better on SciFact: RESULTS.md)."""
        if not self.is_built:
            raise NotBuiltError("this Pipeline has members that are not built: call build(corpus)")
        depth = max(self.depth, k)
        rescoring = {n for n, r in self.retrievers.items() if hasattr(r, "score_run")} \
            if self.late_interaction == "rescore" else set()
        if rescoring == set(self.retrievers):
            rescoring = set()
        runs = {n: r.search(queries, k=depth) for n, r in self.retrievers.items() if n not in rescoring}
        if rescoring:
            union: Run = {q: {} for q in queries}
            for run in runs.values():
                for q, hits in run.items():
                    union.setdefault(q, {}).update(hits)
            for name in rescoring:
                runs[name] = self.retrievers[name].score_run(union, queries)
        return [runs[n] for n in self.retrievers]

    def search(self, queries: Queries, k: int = 100) -> Run:
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if self.reranker is None:
            fused = fuse(self.member_runs(queries, k), self.fusion, k=k)
            return {q: fused.get(q, {}) for q in queries}
        first = self.first_stage(queries, max(k, self.rerank_depth))
        scores = self.reranker.score_run(first, queries, self._texts, depth=self.rerank_depth)
        reranked = rerank_scores(first, scores, interpolation=self.interpolation)
        return {q: dict(ranked_items(reranked.get(q, {}), k)) for q in queries}

    def first_stage(self, queries: Queries, k: int = 100) -> Run:
        """The fused run before any reranking."""
        fused = fuse(self.member_runs(queries, k), self.fusion, k=k)
        return {q: fused.get(q, {}) for q in queries}

    @property
    def _texts(self) -> Any:
        if not self._reads_texts:
            return None
        if self.documents is None:
            raise NotBuiltError("this Pipeline's rerank stage has no documents: call build(corpus)")
        return self.documents.text_map()

    def tune_interpolation(self, qrels: Qrels, queries: Queries, *, metric: str = "nDCG@10",
                           step: float = 0.1, split: str | None = None) -> float:
        """Set ``interpolation`` by grid search on a dev/train split; returns the tuned score there.

        Tune on queries the reranker was not trained on (``train-reranker`` holds some out).
        """
        if split == "test":
            raise ConfigError("the interpolation weight must not be tuned on the test split; use dev")
        if self.reranker is None:
            raise ConfigError("this pipeline has no rerank stage to tune")
        first = self.first_stage(queries, self.rerank_depth)
        scores = self.reranker.score_run(first, queries, self._texts, depth=self.rerank_depth)
        values = interpolation_grid(first, scores, qrels, metric, step)
        self.interpolation = best_weight(values)
        return values[self.interpolation]

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
        params: dict[str, Any] = {"fusion": self.fusion.to_dict(), "depth": self.depth,
                                  "members": list(self.retrievers), "late_interaction": self.late_interaction}
        if self.reranker is not None:
            params["rerank"] = {"reranker": self.reranker.spec(), "depth": self.rerank_depth,
                                "interpolation": self.interpolation}
        return params

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the members under ``retrievers/`` and the fusion settings, atomically."""
        if not self.is_built:
            raise NotBuiltError("build the pipeline before saving it")
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.write(tmp)
        return path

    def write(self, folder: Path, extra: dict[str, Any] | None = None) -> None:
        """Write the pipeline into ``folder`` (inside an ``atomic_dir``), manifest last; files put
        there before (a build's report) are checksummed with it. ``extra`` goes into the
        manifest's provenance."""
        for name, retriever in self.retrievers.items():
            retriever.save(folder / "retrievers" / name)
        if self.reranker is not None:
            self.reranker.save(folder / "reranker")
            if self._reads_texts:
                _write_documents(folder / DOCUMENTS, self.documents)
        write_manifest(folder, kind=self.kind, format_version=FORMAT_VERSION, params=self.params(),
                       provenance={"corpus": self.corpus_info, **(extra or {})})

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Load the pipeline and each member (members check their own manifests and checksums)."""
        path = Path(path)
        manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION, verify=False)
        params = manifest["params"]
        members = {name: load_index(path / "retrievers" / name) for name in params["members"]}
        f = params["fusion"]
        fusion = Fusion(f["method"], f["norm"], tuple(f["weights"]) if f["weights"] else None, f["rrf_k"])
        rerank = params.get("rerank")
        late = params.get("late_interaction", "rescore")
        if not rerank:
            return cls(members, fusion, depth=params["depth"], late_interaction=late)
        recorded = rerank["reranker"]
        try:  # the recorded path, if this machine can run it
            reranker = load_reranker(path / "reranker", backend=recorded.get("backend", "auto"),
                                     precision=recorded.get("precision", "auto"))
            reranker.resolved  # noqa: B018
        except PretrieverError:
            reranker = load_reranker(path / "reranker")
        pipeline = cls(members, fusion, depth=params["depth"], reranker=reranker,
                       rerank_depth=rerank["depth"], interpolation=rerank["interpolation"],
                       late_interaction=late)
        if (path / DOCUMENTS).is_file():
            pipeline.documents = read_corpus(path / DOCUMENTS, progress=False)
        return pipeline


def _write_documents(path: Path, corpus: Corpus | None) -> None:
    import json

    if corpus is None:
        raise NotBuiltError("build the pipeline (with its corpus) before saving its rerank stage")
    with path.open("w", encoding="utf-8") as f:
        for doc_id, title, text in zip(corpus.ids, corpus.titles, corpus.texts):
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")


def interpolation_grid(first: Run, scores: Run, qrels: Qrels, metric: str = "nDCG@10", step: float = 0.1,
                       ) -> dict[float, float]:
    """``metric`` of the first stage reranked by ``scores`` at every interpolation weight 0, step, ..., 1
    (see ``rerank_scores``): what tuning the weight on held-out queries chooses from."""
    from pretriever.evaluation.measures import evaluate

    grid = [round(i * step, 6) for i in range(round(1 / step) + 1)]
    return {w: evaluate(qrels, rerank_scores(first, scores, interpolation=w), [metric]).metrics[metric]
            for w in grid}


def best_weight(values: dict[float, float]) -> float:
    """The weight of the best score; ties go to the larger weight (more reranker)."""
    return max(values, key=lambda w: (values[w], w))
