"""Cross-encoder reranker over sentence-transformers' CrossEncoder (Nogueira & Cho 2019, "Passage
Re-ranking with BERT").

The query and a document are read together by one transformer whose classification head gives
a relevance logit. sentence-transformers owns the model (tokenisation, the classifier, saving);
pretriever adds what a reranking stage needs around it: batches sorted by length so padding is
not computed (the scores never depend on the batch size), the same torch / OpenVINO backends as
the bi-encoder, raw logits as scores (monotone in the sigmoid ST applies, and what margin-MSE
distillation wants), and a spec recorded in every pipeline manifest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever.encoders import backends
from pretriever.errors import ConfigError, DataNotFoundError
from pretriever.types import Queries, Run

FORMAT_VERSION = 1


def is_cross_encoder_folder(path: str | Path) -> bool:
    """True for a folder holding a sequence-classification model (a cross-encoder)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, json.JSONDecodeError):
        return False
    return any(a.endswith("ForSequenceClassification") for a in architectures)


class Reranker(backends.BackendModel):
    """A cross-encoder that scores (query, document) pairs; higher is more relevant.

    ``model``: a cross-encoder folder (one trained by ``pretriever train-reranker``), a hub id, or
    a bi-encoder such as "minilm" to start training from (its classifier head is then new and
    untrained: such a model must be trained before it ranks anything). ``interpolation``: the
    default weight of this reranker's scores against the first stage's (see ``rerank_scores``);
    ``train_reranker`` tunes it on held-out queries and records it in the model's manifest, with
    the rerank depth it was tuned at (``interpolation_depth``).
    """

    kind: ClassVar[str] = "encoder.cross"

    def __init__(
        self,
        model: str | Path = "minilm",
        *,
        max_length: int = 256,
        batch_size: int = 32,
        device: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        interpolation: float = 1.0,
        interpolation_depth: int | None = None,
    ) -> None:
        super().__init__(model, device=device, backend=backend, precision=precision)
        if not 0.0 <= interpolation <= 1.0:
            raise ConfigError(f"interpolation must be between 0 and 1, got {interpolation}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {max_length}")
        self.max_length = max_length
        self.batch_size = batch_size
        self.interpolation = interpolation
        self.interpolation_depth = interpolation_depth

    @cached_property
    def st(self) -> Any:
        """The underlying ``sentence_transformers.CrossEncoder`` (fp32), loaded on first use."""
        import transformers

        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # a new head's "newly initialized" report
        try:
            model = self._load("CrossEncoder", "reranking", num_labels=1, max_length=self.max_length)
        finally:
            transformers.logging.set_verbosity(verbosity)
        if int(model.num_labels) != 1:
            raise ConfigError(f"{self.model} has {model.num_labels} labels; a reranker needs 1")
        return model

    @property
    def trained(self) -> bool:
        """False when the classifier head is newly initialised (a bi-encoder folder as base)."""
        return is_cross_encoder_folder(self.source)

    def _torch_module(self) -> Any:
        return self.st.transformers_model

    def _traced(self) -> tuple[Any, Any, int]:
        return self.st.transformers_model, self.st.tokenizer, self.max_length

    def spec(self) -> dict[str, Any]:
        """What changes the scores: recorded in pipeline manifests."""
        return {"kind": self.kind, "model": self.model, "source": self.source,
                "weights_sha256": self._weights_sha256, "max_length": self.max_length,
                "batch_size": self.batch_size, "interpolation": self.interpolation,
                "interpolation_depth": self.interpolation_depth,
                "backend": self.resolved[0], "precision": self.resolved[1]}

    # -- scoring -------------------------------------------------------------------------------
    def token_lengths(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Token count of each pair, capped at max length: the key for length-sorted batches."""
        ids = self.st.tokenizer(list(queries), list(documents), truncation=True,
                                max_length=self.max_length)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def score_batch(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Logits of one batch of pairs as given (no re-batching), float32."""
        if not queries:
            return np.zeros(0, dtype=np.float32)
        backend, _ = self.resolved
        if backend == "openvino":
            from pretriever.encoders.openvino import tokenize

            features = tokenize(self.st.tokenizer, queries, self.max_length, pairs_with=documents)
            return np.asarray(self._runner(features), dtype=np.float32).reshape(len(queries))
        import torch

        model = self._torch_model
        features = self.st.tokenizer(list(queries), list(documents), padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
        features = {k: v.to(model.device) for k, v in features.items()}
        with torch.inference_mode():
            logits = model(**features).logits
        return logits.float().cpu().numpy().reshape(len(queries))

    def score(self, pairs: Sequence[tuple[str, str]], *, progress: bool = False) -> np.ndarray:
        """Logit of every (query, document) pair, in input order; longest pairs are batched first."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        from pretriever._progress import Progress

        queries = [q for q, _ in pairs]
        documents = [d for _, d in pairs]
        order = np.argsort(-self.token_lengths(queries, documents), kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        with Progress(len(pairs), "reranking", "pairs", enabled=progress) as bar:
            for start in range(0, len(pairs), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = self.score_batch([queries[i] for i in rows], [documents[i] for i in rows])
                bar.update(len(rows))
        return out

    def score_run(self, run: Run, queries: Queries, documents: Mapping[str, str], *,
                  depth: int | None = None, progress: bool = False) -> Run:
        """Cross-encoder logits for the top-``depth`` documents of each query of ``run`` (all of
        them when ``depth`` is None): teacher scores, or the input of ``rerank``."""
        from pretriever.runs import ranked

        pairs: list[tuple[str, str]] = []
        keys: list[tuple[str, str]] = []
        for qid, scores in run.items():
            if qid not in queries:
                raise ConfigError(f"the run has query '{qid}', which is not among the given queries; "
                                  "use the queries of the split the run was made on")
            for hit in ranked(scores, depth):
                if hit.doc_id not in documents:
                    raise ConfigError(f"the run ranks document '{hit.doc_id}' for query '{qid}', which "
                                      "is not in the corpus; was the run made on another corpus?")
                pairs.append((queries[qid], documents[hit.doc_id]))
                keys.append((qid, hit.doc_id))
        scores = self.score(pairs, progress=progress)
        out: Run = {qid: {} for qid in run}
        for (qid, doc_id), value in zip(keys, scores.tolist()):
            out[qid][doc_id] = value
        return out

    def describe_mix(self, depth: int) -> str:
        """How reranked scores are mixed, for evaluation notes."""
        if self.interpolation >= 1.0:
            return "reranker scores alone"
        where = f", tuned at depth {self.interpolation_depth}" if self.interpolation_depth else ""
        differs = " (another depth than now)" if self.interpolation_depth not in (None, depth) else ""
        return f"reranker weight {self.interpolation} against the first stage{where}{differs}"

    def rerank(self, run: Run, queries: Queries, documents: Mapping[str, str], *, depth: int = 100,
               interpolation: float | None = None, progress: bool = False) -> Run:
        """Reorder the top-``depth`` of each query; see ``rerank_scores`` (``interpolation``
        defaults to this reranker's own)."""
        teacher = self.score_run(run, queries, documents, depth=depth, progress=progress)
        weight = self.interpolation if interpolation is None else interpolation
        return rerank_scores(run, teacher, interpolation=weight)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False, provenance: dict[str, Any] | None = None,
             files: dict[str, str] | None = None) -> Path:
        """A CrossEncoder folder (loads in plain sentence-transformers) plus a manifest; ``files``
        adds text files (name -> content), covered by the manifest's checksums."""
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.st.save(str(tmp))
            for name, content in (files or {}).items():
                (tmp / name).write_text(content, encoding="utf-8")
            params = {k: v for k, v in self.spec().items() if k not in ("source", "weights_sha256")}
            write_manifest(tmp, kind=self.kind, format_version=FORMAT_VERSION, params=params,
                           provenance=provenance or {},
                           libraries=("torch", "transformers", "sentence-transformers"))
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, backend: str = "auto",
             precision: str = "auto", batch_size: int | None = None) -> Reranker:
        """Load a folder written by ``save`` or any cross-encoder folder. The saved batch size is
        reused unless one is given (padding changes scores in the last float digits)."""
        path = Path(path)
        max_length, saved_batch, interpolation, tuned_at = 256, 32, 1.0, None
        if (path / "manifest.json").is_file():
            manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION,
                                     verify=False)
            max_length = int(manifest["params"]["max_length"])
            saved_batch = int(manifest["params"].get("batch_size", saved_batch))
            interpolation = float(manifest["params"].get("interpolation", interpolation))
            tuned_at = manifest["params"].get("interpolation_depth")
        elif not is_cross_encoder_folder(path):
            raise DataNotFoundError(f"{path} is not a cross-encoder folder (no sequence-classification "
                                    "config.json); train one with `pretriever train-reranker`")
        return cls(path, max_length=max_length, device=device, backend=backend, precision=precision,
                   batch_size=batch_size or saved_batch, interpolation=interpolation,
                   interpolation_depth=tuned_at)


def rerank_scores(run: Run, scores: Run, *, interpolation: float = 1.0) -> Run:
    """Reorder each query's documents that have a reranker score; the set of documents never changes.

    With ``interpolation`` = a < 1 the new score is a * minmax(reranker) + (1 - a) * minmax(first
    stage) over the reranked documents (score interpolation, as in most multi-stage systems).
    Documents of the run without a reranker score (below the rerank depth) keep their order
    below every reranked one.
    """
    if not 0.0 <= interpolation <= 1.0:
        raise ConfigError(f"interpolation must be between 0 and 1, got {interpolation}")
    from pretriever.runs import ranked

    out: Run = {}
    for qid, first in run.items():
        rescored = scores.get(qid, {})
        top = [d for d in first if d in rescored]
        if not top:
            out[qid] = dict(first)
            continue
        new = _minmax([rescored[d] for d in top])
        if interpolation < 1.0:
            old = _minmax([first[d] for d in top])
            new = interpolation * new + (1.0 - interpolation) * old
        merged = {d: float(s) + 1.0 for d, s in zip(top, new)}  # reranked ones: in [1, 2]
        rest = [h.doc_id for h in ranked(first) if h.doc_id not in rescored]
        for i, doc_id in enumerate(rest):
            merged[doc_id] = 1.0 - (i + 1) / (len(rest) + 1)  # in (0, 1), first-stage order kept
        out[qid] = merged
    return out


def _minmax(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.ones_like(array)
