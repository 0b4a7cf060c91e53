"""Learned sparse encoders over sentence-transformers' ``SparseEncoder``: a weight per vocabulary
term, most of them zero, searched from an inverted index like BM25.

Two kinds:
- ``splade``: queries and documents both expanded by a masked-language-model head, max-pooled
  over positions of log(1 + relu(logits)) (Formal et al. 2021, "SPLADE v2");
- ``inference-free``: documents expanded the same way; a query is only tokenised, each of its
  terms weighted by its IDF on the user's corpus, so no model runs at query time (Geng et al.
  2024, "Towards competitive search relevance for inference-free learned sparse retrievers";
  sentence-transformers' ``Router`` with a ``SparseStaticEmbedding`` query side).

Any model with an MLM head loads by hub id or folder (a published SPLADE or inference-free model,
online). Offline, the bundled all-MiniLM-L6-v2 has no trained MLM head: its head is initialised
here as the identity transform (dense = I, bias 0; LayerNorm with unit gain, zero shift; decoder
tied to the word embeddings) with a decoder bias of ``HEAD_BIAS`` (-4), so a position's activation
for term t starts as relu(LayerNorm(h) . e_t - 4): its contextual similarity to t's input
embedding, above a threshold. Untrained, that start expands a text into its own words and their
neighbours ("solar" -> solar, sun, sunlight, panels, daylight) but keeps thousands of terms per
document and ranks below BM25. Measured inference-free (benchmarks/sparse.py): SciFact nDCG@10
0.6277 with 3,393 terms per document, NFCorpus 0.2658 with 3,556 (BM25 0.6863 / 0.3210); -3 keeps
12,000 terms and scores 0.6070 / 0.2598; -5 drops the documents' own words and scores ~0.01.
Training (``training/sparse.py``: FLOPS-regularised, the new head at a higher learning rate) cuts
that to a few hundred terms per document (measured in benchmarks/RESULTS.md, "Learned sparse").
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever.errors import ConfigError

KINDS = ("splade", "inference-free")
BUNDLED = "minilm"
HEAD_BIAS = -4.0  # the untrained head's threshold (module docstring: measured on SciFact and NFCorpus)


def idf_weights(tokenizer: Any, texts: Sequence[str], batch: int = 1024) -> np.ndarray:
    """BM25's IDF, log(1 + (N - df + 0.5) / (df + 0.5)), of every vocabulary token over ``texts``
    tokenised by ``tokenizer``; special tokens weigh 0."""
    vocab = len(tokenizer)
    df = np.zeros(vocab, dtype=np.int64)
    for start in range(0, len(texts), batch):
        encoded = tokenizer(
            list(texts[start : start + batch]),
            add_special_tokens=False,
            truncation=False,
            return_attention_mask=False,
            verbose=False,  # no "longer than the maximum length" warning: this only counts terms
        )["input_ids"]
        for ids in encoded:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
    n = max(len(texts), 1)
    idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
    idf[list(tokenizer.all_special_ids)] = 0.0
    return idf


def _identity_head(mlm: Any) -> None:
    """The MLM head of a checkpoint that has none (the bundled MiniLM): identity transform, decoder
    tied to the word embeddings, bias ``HEAD_BIAS`` (see the module docstring)."""
    import torch

    head = mlm.auto_model.cls.predictions
    with torch.no_grad():
        head.transform.dense.weight.copy_(torch.eye(head.transform.dense.weight.shape[0]))
        head.transform.dense.bias.zero_()
        head.transform.LayerNorm.weight.fill_(1.0)
        head.transform.LayerNorm.bias.zero_()
        head.bias.fill_(HEAD_BIAS)
        embeddings = mlm.auto_model.get_input_embeddings().weight
        if head.decoder.weight.data_ptr() != embeddings.data_ptr():
            head.decoder.weight.copy_(embeddings)
        if head.decoder.bias is not None and head.decoder.bias.data_ptr() != head.bias.data_ptr():
            head.decoder.bias.fill_(HEAD_BIAS)


class SparseEncoder:
    """Texts in, float32 CSR matrices (one row per text, one column per vocabulary term) out.

    ``model``: a sentence-transformers sparse model folder or hub id (its kind is read from it), or
    any MLM-headed model (``kind`` says which to build; ``minilm`` = the bundled MiniLM). An
    inference-free model built here needs ``idf``: the corpus texts (IDF computed on them with the
    model's tokenizer) or the weights themselves (``idf_weights``).
    """

    kind: ClassVar[str] = "encoder.sparse"

    def __init__(
        self,
        model: str | Path | Any = BUNDLED,
        *,
        kind: str = "splade",
        idf: np.ndarray | Sequence[str] | None = None,
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown sparse encoder kind '{kind}'; choose one of {', '.join(KINDS)}")
        self.source = model if isinstance(model, (str, Path)) else getattr(model, "source", "in memory")
        self.batch_size = batch_size
        self.max_length = max_length
        self.sparse_kind = kind
        self.new_head = False  # whether the MLM head was initialised here (the bundled MiniLM)
        if isinstance(model, (str, Path)):
            self.model = self._load(str(model), kind, idf)
        else:
            self.model = model
        self.sparse_kind = _kind_of(self.model)
        self.max_length = int(getattr(self.model, "max_seq_length", None) or max_length)
        self._query_weights: np.ndarray | None = None  # an inference-free query side's IDF, for lookups

    def _load(self, name: str, kind: str, idf: np.ndarray | Sequence[str] | None) -> Any:
        from sentence_transformers import SparseEncoder as STSparseEncoder

        from pretriever.encoders.backends import resolve_model

        resolved = resolve_model(name)
        folder = Path(resolved)
        if (folder / "modules.json").is_file() and _is_sparse_folder(folder):
            return STSparseEncoder(resolved, device="cpu")
        from sentence_transformers.base.modules.router import Router
        from sentence_transformers.sparse_encoder.modules import (
            MLMTransformer,
            SparseStaticEmbedding,
            SpladePooling,
        )

        bundled = name.lower() in (BUNDLED, "all-minilm-l6-v2")
        if bundled:  # transformers reports the head it lacks at length: said in the docstring instead
            from transformers.utils import logging as hf_logging

            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
        try:
            mlm = MLMTransformer(resolved, max_seq_length=self.max_length)
        finally:
            if bundled:
                hf_logging.set_verbosity(level)
        if bundled:
            _identity_head(mlm)
            self.new_head = True
        pooling = SpladePooling(pooling_strategy="max", activation_function="relu")
        if kind == "splade":
            return STSparseEncoder(modules=[mlm, pooling], device="cpu", similarity_fn_name="dot")
        if idf is not None and not isinstance(idf, np.ndarray):  # the corpus texts: IDF on them
            idf = idf_weights(mlm.tokenizer, list(idf))
        if idf is None:
            raise ConfigError(
                "an inference-free encoder weights query terms by their IDF on the corpus: "
                "give idf=the corpus texts (or idf_weights(tokenizer, texts))"
            )
        import torch

        query = SparseStaticEmbedding(
            tokenizer=mlm.tokenizer, weight=torch.as_tensor(idf, dtype=torch.float32), frozen=True
        )
        router = Router.for_query_document(query_modules=[query], document_modules=[mlm, pooling])
        return STSparseEncoder(modules=[router], device="cpu", similarity_fn_name="dot")

    # -- encoding --------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> Any:
        """Queries as CSR rows. An inference-free query is its tokens' IDF weights, looked up here
        without torch (the same values as the model's static query module, a tenth of the time:
        this is the query latency of a search)."""
        if self.sparse_kind == "inference-free" and self._lookup_applies():
            return self._static_queries(texts)
        return self._encode(texts, "query", progress)

    def _lookup_applies(self) -> bool:
        """The lookup is the model's query side unless the model prepends a query prompt or caps
        the active terms (then sentence-transformers computes it)."""
        prompted = bool((self.model.prompts or {}).get("query"))
        return not prompted and not getattr(self.model, "max_active_dims", None)

    def query_weights(self) -> np.ndarray:
        """An inference-free model's query-side weight of every vocabulary term (its corpus IDF)."""
        if self._query_weights is None:
            weight = self.model[0].sub_modules["query"][0].weight
            self._query_weights = weight.detach().cpu().float().numpy()
        return self._query_weights

    def _static_queries(self, texts: Sequence[str]) -> Any:
        import scipy.sparse

        weights = self.query_weights()
        tokenizer = self.model[0].sub_modules["query"][0].tokenizer
        ids = [] if not len(texts) else tokenizer(
            list(texts), add_special_tokens=False, truncation=True)["input_ids"]
        indptr, indices = [0], []
        for row in ids:
            terms = np.unique(np.asarray(row, dtype=np.int64))
            terms = terms[weights[terms] != 0]
            indices.append(terms)
            indptr.append(indptr[-1] + len(terms))
        columns = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
        return scipy.sparse.csr_matrix((weights[columns], columns, np.asarray(indptr)),
                                       shape=(len(texts), self.dimensions))

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> Any:
        return self._encode(texts, "document", progress)

    def _encode(self, texts: Sequence[str], side: str, progress: bool) -> Any:
        import scipy.sparse

        if not len(texts):
            return scipy.sparse.csr_matrix((0, self.dimensions), dtype=np.float32)
        method = self.model.encode_query if side == "query" else self.model.encode_document
        out = (
            method(
                list(texts),
                batch_size=self.batch_size,
                convert_to_sparse_tensor=True,
                show_progress_bar=progress,
            )
            .coalesce()
            .cpu()
        )
        rows, cols = out.indices().numpy()
        matrix = scipy.sparse.csr_matrix(
            (out.values().numpy().astype(np.float32), (rows, cols)), shape=tuple(out.shape)
        )
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return matrix

    @property
    def dimensions(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    # -- identity --------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """What changes the vectors: the model (and its weights' checksum), kind, lengths."""
        return {
            "kind": self.kind,
            "sparse_kind": self.sparse_kind,
            "source": str(self.source),
            "weights": _weights_digest(self.model),
            "max_length": self.max_length,
            "dimensions": self.dimensions,
            "similarity": "dot",
        }

    def save(self, path: str | Path, *, overwrite: bool = False, provenance: dict[str, Any] | None = None,
             files: dict[str, str] | None = None) -> Path:
        """A plain sentence-transformers sparse model folder (loads in ``SparseEncoder(path)``),
        written atomically with pretriever's manifest beside it (``provenance``: how it was trained;
        ``files``: text files added to the folder, name -> content)."""
        from pretriever._io import atomic_dir
        from pretriever._manifest import write_manifest

        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.model.save(str(tmp))
            for name, content in (files or {}).items():
                (tmp / name).write_text(content, encoding="utf-8")
            write_manifest(
                tmp,
                kind="model.sparse",
                format_version=1,
                params={"sparse_kind": self.sparse_kind, "max_length": self.max_length},
                provenance={"source": str(self.source), **(provenance or {})},
                libraries=("torch", "transformers", "sentence-transformers"),
            )
        return path

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> SparseEncoder:
        return cls(path, **kwargs)


def _is_sparse_folder(folder: Path) -> bool:
    text = (folder / "modules.json").read_text(encoding="utf-8")
    return any(
        name in text for name in ("SpladePooling", "Router", "SparseStaticEmbedding", "sparse_encoder")
    )


def _kind_of(model: Any) -> str:
    """``inference-free`` when queries go through a static (IDF) embedding, else ``splade``."""
    from sentence_transformers.base.modules.router import Router

    first = model[0]
    if isinstance(first, Router):
        query = first.sub_modules["query"]
        if type(query[0]).__name__ == "SparseStaticEmbedding":
            return "inference-free"
    return "splade"


def _weights_digest(model: Any) -> str:
    """A short checksum of the model's parameters (two models with the same name but other weights
    must not share an index)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes()[:4096])
        digest.update(str(tuple(tensor.shape)).encode())
    return digest.hexdigest()[:16]
