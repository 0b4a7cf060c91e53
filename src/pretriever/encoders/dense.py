"""Dense bi-encoder over sentence-transformers (Reimers & Gurevych 2019, "Sentence-BERT").

sentence-transformers owns the model: tokenisation, the transformer, pooling and normalisation
as its model folder describes them. pretriever adds what it leaves to the caller: resolving the
offline bundled model by a short name, applying the model's query/document prompts consistently,
length-sorted batches whose composition does not depend on how a corpus is sharded, and a spec
that pins all of it in every index manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever.encoders import backends
from pretriever.errors import ConfigError

FORMAT_VERSION = 1
# what makes two encoders produce comparable vectors (backend and precision only add noise)
IDENTITY_KEYS = ("weights_sha256", "prompts", "max_length", "pooling", "include_prompt",
                 "token_weights_sha256", "normalize", "similarity", "dim")


class DenseEncoder(backends.BackendModel):
    """A sentence-transformers bi-encoder.

    ``query_prompt`` / ``document_prompt`` override the model folder's ``prompts`` ("query" /
    "document"); ``max_length`` overrides its ``max_seq_length``. Vectors are L2-normalised when
    the model's similarity is cosine, so that inner product is the score everywhere.

    ``backend`` / ``precision``: "auto" takes torch fp16 on a GPU; on a CPU an int8 OpenVINO model
    stored in the model folder by ``pretriever optimize``, else bf16 where the CPU computes it
    natively (OpenVINO if installed, else torch), else torch fp32. See ``resolved``.
    """

    kind: ClassVar[str] = "encoder.dense"

    def __init__(
        self,
        model: str | Path = "minilm",
        *,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        device: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
    ) -> None:
        super().__init__(model, device=device, backend=backend, precision=precision)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.max_length = max_length
        self.batch_size = batch_size

    # -- the sentence-transformers model, loaded on first use -----------------------------------
    @cached_property
    def st(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded lazily: importing torch is slow)."""
        from pretriever.encoders.idf_pooling import freeze_token_weights

        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        model = self._load("SentenceTransformer", "dense retrieval")
        if self.max_length is not None:
            model.max_seq_length = self.max_length
        freeze_token_weights(model)  # IDF pooling: corpus statistics that a save would not keep
        return model

    @cached_property
    def _pooling(self) -> dict[str, Any]:
        from pretriever.encoders.idf_pooling import token_weights

        pooling = next((m for m in self.st if type(m).__name__ == "Pooling"), None)
        config = pooling.get_config_dict() if pooling is not None else {}
        weights = token_weights(self.st)
        digest = None if weights is None else hashlib.sha256(weights.tobytes()).hexdigest()
        return {"mode": config.get("pooling_mode"), "include_prompt": config.get("include_prompt", True),
                "token_weights": weights, "token_weights_sha256": digest}

    @property
    def prompts(self) -> dict[str, str]:
        """The query and document prompts actually applied."""
        folder = self.st.prompts or {}
        query = self.query_prompt if self.query_prompt is not None else folder.get("query", "")
        doc = self.document_prompt if self.document_prompt is not None else folder.get("document", "")
        return {"query": query or "", "document": doc or ""}

    @property
    def normalize(self) -> bool:
        return self.st.similarity_fn_name in (None, "cosine")

    @property
    def dim(self) -> int:
        return int(self.st.get_embedding_dimension())

    def _torch_module(self) -> Any:
        return self.st

    def _traced(self) -> tuple[Any, Any, int]:
        return self.st[0].auto_model, self.st.tokenizer, int(self.st.max_seq_length)

    def spec(self) -> dict[str, Any]:
        """What changes the vectors: recorded in index manifests, compared before searching."""
        return {
            "kind": self.kind,
            "model": self.model,
            "source": self.source,
            "weights_sha256": self._weights_sha256,
            "prompts": self.prompts,
            "max_length": int(self.st.max_seq_length),
            "pooling": self._pooling["mode"],
            "include_prompt": self._pooling["include_prompt"],
            "token_weights_sha256": self._pooling["token_weights_sha256"],
            "normalize": self.normalize,
            "similarity": "cosine" if self.normalize else str(self.st.similarity_fn_name),
            "dim": self.dim,
            "backend": self.resolved[0],
            "precision": self.resolved[1],
        }

    def identity(self) -> dict[str, Any]:
        """The part of ``spec()`` two encoders must share for their vectors to be comparable."""
        return identity_of(self.spec())

    # -- encoding ------------------------------------------------------------------------------
    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each text, capped at max length: the key for length-sorted batches."""
        tokenizer = self.st.tokenizer
        cap = int(self.st.max_seq_length)
        lengths = np.empty(len(texts), dtype=np.int64)
        step = 4096
        for start in range(0, len(texts), step):
            ids = tokenizer(list(texts[start : start + step]), add_special_tokens=False,
                            truncation=True, max_length=cap)["input_ids"]
            lengths[start : start + len(ids)] = [len(x) for x in ids]
        return lengths

    def encode_batch(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        """Encode one batch as given (no re-batching), float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        backend, precision = self.resolved
        if backend == "openvino":
            from pretriever.encoders.openvino import pool, pooling_mask, tokenize

            if prompt and not self._pooling["include_prompt"]:
                raise ConfigError("a model whose pooling excludes the prompt needs backend='torch'")
            features = tokenize(self.st, [prompt + t for t in texts], int(self.st.max_seq_length))
            vectors = pool(self._runner(features), pooling_mask(features, self._pooling["token_weights"]),
                           self._pooling["mode"])
        else:
            vectors = self._torch_model.encode(
                list(texts), prompt=prompt or None, batch_size=len(texts), show_progress_bar=False,
                convert_to_numpy=True, normalize_embeddings=self.normalize and precision == "float32",
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.normalize and (backend == "openvino" or precision != "float32"):  # in fp32
            vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors

    def _encode(self, texts: Sequence[str], prompt: str, progress: bool = False,
                what: str = "texts") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from pretriever._progress import Progress

        order = np.argsort(-self.token_lengths(texts), kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with Progress(len(texts), f"encoding {what}", what, enabled=progress) as bar:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                out[rows] = self.encode_batch([texts[i] for i in rows], prompt)
                bar.update(len(rows))
        return out

    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.prompts["query"], progress, "queries")

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.prompts["document"], progress, "documents")

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False, provenance: dict[str, Any] | None = None,
             files: dict[str, str] | None = None) -> Path:
        """Write a sentence-transformers folder (prompts and max length included) plus a manifest.

        The folder loads unchanged in plain ``SentenceTransformer(path)``. ``files`` adds text
        files (name -> content) covered by the manifest's checksums.
        """
        path = Path(path)
        model = self.st
        saved_prompts = dict(model.prompts or {})
        model.prompts = {**saved_prompts, **self.prompts}
        try:
            with atomic_dir(path, overwrite=overwrite) as tmp:
                model.save(str(tmp))
                for name, content in (files or {}).items():
                    (tmp / name).write_text(content, encoding="utf-8")
                params = self.spec()
                params["source"] = str(path.resolve())  # the saved weights, not the ones loaded
                params["weights_sha256"] = backends.weights_sha256(tmp)
                write_manifest(tmp, kind=self.kind, format_version=FORMAT_VERSION, params=params,
                               provenance=provenance or {},
                               libraries=("torch", "transformers", "sentence-transformers"))
        finally:
            model.prompts = saved_prompts
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, backend: str = "auto",
             precision: str = "auto") -> DenseEncoder:
        """Load a folder written by ``save`` (or any sentence-transformers folder)."""
        path = Path(path)
        if (path / "manifest.json").is_file():
            manifest = read_manifest(path, kind=cls.kind, max_format_version=FORMAT_VERSION)
            return cls(path, max_length=manifest["params"]["max_length"], device=device,
                       backend=backend, precision=precision)
        return cls(backends.resolve_model(path), device=device, backend=backend, precision=precision)


def identity_of(spec: dict[str, Any], keys: tuple[str, ...] = IDENTITY_KEYS) -> dict[str, Any]:
    """The identity keys of an encoder spec (falls back to the source when weights are unknown)."""
    out = {k: spec.get(k) for k in keys}
    if out["weights_sha256"] is None:
        out["source"] = spec.get("source")
    return out


def check_compatible(index_spec: dict[str, Any], query_spec: dict[str, Any],
                     keys: tuple[str, ...] = IDENTITY_KEYS) -> list[str]:
    """Refuse a query encoder whose vectors are not comparable to the index's (``keys``: what makes
    them comparable, by encoder kind); return notes about harmless differences (another backend or
    precision of the same model)."""
    a, b = identity_of(index_spec, keys), identity_of(query_spec, keys)
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ConfigError(
            f"the query encoder differs from the one the index was built with in {', '.join(diff)} "
            f"(index: {describe(index_spec)}; queries: {describe(query_spec)}); search with the "
            "index's own model or rebuild the index"
        )
    notes = []
    for key in ("backend", "precision"):
        if index_spec.get(key) != query_spec.get(key):
            notes.append(f"documents encoded with {key} {index_spec.get(key)}, queries with "
                         f"{query_spec.get(key)} (same model)")
    return notes


def encoder_from_spec(spec: dict[str, Any], *, device: str | None = None, backend: str = "auto",
                      precision: str = "auto") -> DenseEncoder:
    """Rebuild the encoder an index manifest describes; refuse if its weights changed.

    With backend and precision "auto", the recorded ones are reused when this machine can run
    them (so a saved index searches exactly as it did when built); otherwise they are resolved
    afresh, and the index reports the difference in its notes.
    """
    def make(model: str, b: str, p: str) -> DenseEncoder:
        return DenseEncoder(
            model, query_prompt=spec["prompts"]["query"], document_prompt=spec["prompts"]["document"],
            max_length=spec["max_length"], device=device, backend=b, precision=p,
        )

    return backends.from_spec(spec, make, backend=backend, precision=precision)


def describe(spec: dict[str, Any]) -> str:
    """One line naming an encoder spec, for messages."""
    return json.dumps({k: spec.get(k) for k in ("model", "pooling", "max_length", "prompts")})
