"""Multi-vector late-interaction encoder (Khattab & Zaharia 2020, "ColBERT: Efficient and Effective
Passage Search via Contextualized Late Interaction over BERT").

A text becomes one L2-normalised vector per token; a query scores a document by MaxSim: the sum,
over the query's vectors, of each one's best inner product with the document's vectors.

Two forms from any Hugging Face / sentence-transformers encoder:
- **zero-shot**: the encoder's own last hidden states, normalised, no projection, no markers; the
  special tokens and punctuation are left out of both sides. No training: all-MiniLM-L6-v2's
  token vectors already beat its pooled vector on every collection measured (README, RESULTS.md).
- **trained**: the hidden states through a linear projection (128 dimensions by default), the
  ColBERT query/document marker tokens, queries padded with [MASK] to ``query_length``
  ("query augmentation"), punctuation skipped on the document side.

Folders are written in PyLate's layout (Chaffin & Sourty 2025, the maintained ColBERT library):
the transformer at the root, ``1_Dense/`` (``pylate.models.Dense.Dense``, ``linear.weight``) and
the ColBERT settings in ``config_sentence_transformers.json`` under PyLate's keys, so PyLate and
RAGatouille users can load our models and we can load theirs. The folder is read here without
PyLate (it pins an older sentence-transformers than ours).
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import write_manifest
from pretriever.encoders import backends
from pretriever.errors import ConfigError, DataNotFoundError, MissingDependencyError

FORMAT_VERSION = 1
DENSE_DIR = "1_Dense"
PYLATE_DENSE = "pylate.models.Dense.Dense"
SETTINGS = (
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "do_query_expansion",
    "attend_to_expansion_tokens",
    "skiplist_words",
    "skip_query_tokens",  # pretriever's: the skip list applies to queries too (PyLate keeps every one)
)
# what makes two ColBERT encoders' vectors comparable (backend and precision only add noise)
IDENTITY_KEYS = ("weights_sha256", "projection_sha256", "dim", *SETTINGS)
# None: the document length (queries), the model's maximum length (documents), punctuation and the
# special tokens (skip list)
ZERO_SHOT = {
    "query_prefix": "",
    "document_prefix": "",
    "query_length": None,
    "document_length": None,
    "do_query_expansion": False,
    "attend_to_expansion_tokens": False,
    "skiplist_words": None,
    "skip_query_tokens": True,
}
# the setting measured for `train-colbert` (RESULTS.md); ColBERT's markers ("[unused0]" /
# "[unused1]") and [MASK] query augmentation (do_query_expansion) are options, not measured here
TRAINED = {**ZERO_SHOT, "query_length": 32, "skip_query_tokens": False}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _projection_module(folder: Path) -> Path | None:
    """The folder of a ColBERT model's token projection (a Dense module with no Pooling before it:
    PyLate's layout), if any. A sentence-transformers model's Dense acts on the pooled vector and is
    not a token projection: its token vectors are used zero-shot."""
    modules = (
        json.loads((folder / "modules.json").read_text("utf-8"))
        if (folder / "modules.json").is_file()
        else []
    )
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            return None
        if kind.endswith(".Dense"):
            return folder / module["path"]
    return None


def _transformer_folder(folder: Path) -> Path:
    """Where the Hugging Face model of a sentence-transformers folder lives (root or a subfolder)."""
    if (folder / "modules.json").is_file():
        for module in json.loads((folder / "modules.json").read_text(encoding="utf-8")):
            if str(module.get("type", "")).endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


class ColBERTEncoder(backends.BackendModel):
    """Token vectors for late interaction, zero-shot or through a trained projection.

    ``model``: "minilm" (bundled), a sentence-transformers / Hugging Face folder or hub id, or a
    ColBERT folder (PyLate's layout, ours included). Settings left None come from the folder's
    ``config_sentence_transformers.json`` (PyLate's keys), else from ``ZERO_SHOT`` (no projection
    in the folder) or ``TRAINED``. ``dim``: add a new projection to this many dimensions (to be
    trained; ``init_projection`` sets it from the corpus's principal components).
    ``document_length`` defaults to the model's maximum sequence length.
    """

    kind: ClassVar[str] = "encoder.colbert"
    multivector: ClassVar[bool] = True

    def __init__(
        self,
        model: str | Path = "minilm",
        *,
        dim: int | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        do_query_expansion: bool | None = None,
        attend_to_expansion_tokens: bool | None = None,
        skiplist_words: list[str] | None = None,
        skip_query_tokens: bool | None = None,
        batch_size: int = 32,
        device: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
    ) -> None:
        super().__init__(model, device=device, backend=backend, precision=precision)
        self.new_dim = dim
        self.overrides = {
            "query_prefix": query_prefix,
            "document_prefix": document_prefix,
            "query_length": query_length,
            "document_length": document_length,
            "do_query_expansion": do_query_expansion,
            "attend_to_expansion_tokens": attend_to_expansion_tokens,
            "skiplist_words": skiplist_words,
            "skip_query_tokens": skip_query_tokens,
        }
        self.batch_size = batch_size
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")

    # -- the model, loaded on first use ----------------------------------------------------------
    @cached_property
    def folder(self) -> Path:
        """The model folder: a local one, or a hub id's snapshot (downloaded once), so that a PyLate
        model's projection and settings are read wherever it comes from."""
        source = Path(self.source)
        if source.is_dir():
            return source
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(str(self.source)))
        except Exception as exc:  # offline, unknown id, no huggingface_hub: say what to give instead
            raise DataNotFoundError(
                f"cannot load model '{self.model}' ({type(exc).__name__}: {exc}). Offline, give a local "
                "model folder or 'minilm' (bundled)"
            ) from None

    @cached_property
    def modules(self) -> Any:
        """``torch.nn.ModuleDict`` with the ``transformer`` and, when trained, the ``projection``."""
        try:
            import torch
            from transformers import AutoModel
        except ImportError:
            raise MissingDependencyError("transformers", feature="ColBERT") from None
        source = self.folder
        try:
            transformer = AutoModel.from_pretrained(str(_transformer_folder(source)), local_files_only=True)
        except OSError as exc:
            raise DataNotFoundError(
                f"cannot load the transformer of '{self.model}' from {source} ({exc})"
            ) from None
        modules = torch.nn.ModuleDict({"transformer": transformer})
        hidden = int(transformer.config.hidden_size)
        dense = _projection_module(source)
        if dense is not None:
            config = _read_json(dense / "config.json")
            activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity"))
            if not activation.endswith("Identity") or config.get("use_residual"):
                raise ConfigError(
                    f"{dense} is a projection with activation {activation}"
                    f"{' and a residual' if config.get('use_residual') else ''}: only PyLate's linear "
                    "projection (Identity activation, no residual) is read; give a ColBERT folder"
                )
            if not (dense / "model.safetensors").is_file() and not (dense / "pytorch_model.bin").is_file():
                raise DataNotFoundError(
                    f"{dense} has no weights (model.safetensors); the model folder is "
                    "incomplete: copy or download it again"
                )
            linear = torch.nn.Linear(
                int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", False))
            )
            from safetensors.torch import load_file

            weights = dense / "model.safetensors"
            state = (
                load_file(str(weights))
                if weights.is_file()
                else torch.load(dense / "pytorch_model.bin", map_location="cpu", weights_only=True)
            )
            linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
            modules["projection"] = linear
        if self.new_dim is not None:
            if self.new_dim < 1:
                raise ConfigError(f"dim must be at least 1, got {self.new_dim}")
            if "projection" not in modules:
                modules["projection"] = torch.nn.Linear(hidden, self.new_dim, bias=False)
            elif modules["projection"].out_features != self.new_dim:
                raise ConfigError(
                    f"{self.model} already projects to "
                    f"{modules['projection'].out_features} dimensions, not {self.new_dim}"
                )
        modules.to(backends.torch_device(self.device)).eval()
        return modules

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(_transformer_folder(self.folder)), local_files_only=True)

    @property
    def trained(self) -> bool:
        """True when token vectors go through a projection (PyLate/ColBERT form)."""
        return "projection" in self.modules

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The ColBERT settings in effect (PyLate's names)."""
        source = self.folder
        saved = _read_json(source / "config_sentence_transformers.json")
        base = dict(TRAINED if self.trained else ZERO_SHOT)
        out = {
            k: self.overrides[k] if self.overrides[k] is not None else saved.get(k, base[k]) for k in SETTINGS
        }
        if out["document_length"] is None:
            limit = int(getattr(self.modules["transformer"].config, "max_position_embeddings", 512))
            st_config = _read_json(source / "sentence_bert_config.json")
            out["document_length"] = int(st_config.get("max_seq_length", min(limit, 512)))
        if out["query_length"] is None:
            out["query_length"] = out["document_length"]
        if out["skiplist_words"] is None:
            out["skiplist_words"] = [*string.punctuation, *self._special_tokens()]
        if not out["do_query_expansion"]:
            out["attend_to_expansion_tokens"] = False
        for key in ("query_length", "document_length"):
            if int(out[key]) < 2:
                raise ConfigError(f"{key} must be at least 2, got {out[key]}")
        return out

    def _special_tokens(self) -> list[str]:
        tok = self.tokenizer
        return [t for t in (tok.cls_token, tok.sep_token, tok.bos_token, tok.eos_token) if t]

    @cached_property
    def _ids(self) -> dict[str, Any]:
        """Marker ids, the expansion id and the skip-list ids."""
        tok = self.tokenizer
        ids: dict[str, Any] = {}
        for side in ("query", "document"):
            prefix = self.settings[f"{side}_prefix"]
            token_id = None
            if prefix:
                vocab = tok.get_vocab()
                if prefix not in vocab:  # PyLate adds its markers to the vocabulary, as we do
                    tok.add_tokens([prefix])
                    self.modules["transformer"].resize_token_embeddings(len(tok))
                token_id = tok.convert_tokens_to_ids(prefix)
            ids[side] = token_id
        ids["expansion"] = tok.mask_token_id if tok.mask_token_id is not None else tok.pad_token_id
        vocab = tok.get_vocab()
        ids["skip"] = np.array(
            sorted({vocab[w] for w in self.settings["skiplist_words"] if w in vocab}), dtype=np.int64
        )
        return ids

    @property
    def dim(self) -> int:
        if self.trained:
            return int(self.modules["projection"].out_features)
        return int(self.modules["transformer"].config.hidden_size)

    def _torch_module(self) -> Any:
        return self.modules

    def _traced(self) -> tuple[Any, Any, int]:
        return self.modules["transformer"], self.tokenizer, int(self.settings["document_length"])

    # -- spec ------------------------------------------------------------------------------------
    @cached_property
    def _projection_sha256(self) -> str | None:
        if not self.trained:
            return None
        return sha256_of_tensor(self.modules["projection"].weight.detach().float().cpu().numpy())

    def spec(self) -> dict[str, Any]:
        """What changes the vectors: recorded in index manifests, compared before searching."""
        return {
            "kind": self.kind,
            "model": self.model,
            "source": self.source,
            "weights_sha256": self._weights_sha256,
            "projection_sha256": self._projection_sha256,
            "dim": self.dim,
            **self.settings,
            "normalize": True,
            "similarity": "maxsim",
            "backend": self.resolved[0],
            "precision": self.resolved[1],
        }

    # -- tokenisation and encoding ---------------------------------------------------------------
    def tokenize(
        self, texts: Sequence[str], *, is_query: bool, length: int | None = None
    ) -> dict[str, np.ndarray]:
        """Token ids as ColBERT reads them: the marker after [CLS], queries padded with [MASK] to
        ``query_length`` when expanding; int64 arrays, and ``keep``: the vectors that count.
        ``length`` overrides the side's length (training on shorter documents)."""
        side = "query" if is_query else "document"
        length = int(length or self.settings[f"{side}_length"])
        marker = self._ids[side]
        expand = is_query and self.settings["do_query_expansion"]
        features = self.tokenizer(
            list(texts),
            padding="max_length" if expand else True,
            truncation=True,
            max_length=length - 1 if marker is not None else length,
            return_tensors="np",
        )
        features = {k: np.asarray(v, dtype=np.int64) for k, v in features.items()}
        ids, mask = features["input_ids"], features["attention_mask"]
        if expand:
            ids[mask == 0] = self._ids["expansion"]
        if marker is not None:

            def insert(a: np.ndarray, value: int) -> np.ndarray:
                return np.concatenate(
                    [a[:, :1], np.full((a.shape[0], 1), value, dtype=np.int64), a[:, 1:]], 1
                )

            features = {
                k: insert(v, marker if k == "input_ids" else 1 if k == "attention_mask" else 0)
                for k, v in features.items()
            }
        features["keep"] = self._keep_mask(features, is_query)
        if is_query and self.settings["attend_to_expansion_tokens"]:
            features["attention_mask"] = np.ones_like(features["attention_mask"])
        return features

    def _keep_mask(self, features: dict[str, np.ndarray], is_query: bool) -> np.ndarray:
        """Which output vectors are kept: all of an expanded query, else the real tokens minus the
        skip list (at least one token per text, so that every text has a vector)."""
        ids, mask = features["input_ids"], features["attention_mask"].astype(bool)
        if is_query and self.settings["do_query_expansion"]:
            return np.ones_like(mask)
        if is_query and not self.settings["skip_query_tokens"]:  # as PyLate: every real query token
            return mask
        keep = mask & ~np.isin(ids, self._ids["skip"])
        empty = ~keep.any(axis=1)
        keep[empty, 0] = True
        return keep

    def forward(self, features: dict[str, Any], modules: Any = None) -> Any:
        """Normalised token vectors (batch, length, dim) of tokenised texts, as torch tensors (with
        gradients when the modules are in training mode); ``modules``: another copy (half precision)."""
        import torch

        modules = self.modules if modules is None else modules
        device = next(modules.parameters()).device
        inputs = {k: torch.as_tensor(v, device=device) for k, v in features.items() if k != "keep"}
        hidden = modules["transformer"](**inputs).last_hidden_state
        if "projection" in modules:
            hidden = modules["projection"](hidden.to(modules["projection"].weight.dtype))
        return torch.nn.functional.normalize(hidden.float(), dim=-1)

    def encode_batch(self, texts: Sequence[str], is_query: bool = False) -> list[np.ndarray]:
        """One (tokens, dim) float32 array per text, for one batch as given."""
        if not texts:
            return []
        backend = self.resolved[0]
        features = self.tokenize(texts, is_query=is_query)
        if backend == "openvino":
            hidden = np.asarray(self._runner({k: v for k, v in features.items() if k != "keep"}), np.float32)
            if self.trained:
                weight = self.modules["projection"].weight.detach().float().cpu().numpy()
                hidden = hidden @ weight.T
                if self.modules["projection"].bias is not None:
                    hidden += self.modules["projection"].bias.detach().float().cpu().numpy()
            hidden /= np.clip(np.linalg.norm(hidden, axis=-1, keepdims=True), 1e-12, None)
        else:
            import torch

            with torch.inference_mode():
                hidden = self.forward(features, self._torch_model).cpu().numpy()
        keep = features["keep"]
        return [np.ascontiguousarray(hidden[i][keep[i]]) for i in range(len(texts))]

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token count of each document, capped at ``document_length``: for length-sorted batches."""
        cap = int(self.settings["document_length"])
        lengths = np.empty(len(texts), dtype=np.int64)
        for start in range(0, len(texts), 4096):
            ids = self.tokenizer(
                list(texts[start : start + 4096]), add_special_tokens=False, truncation=True, max_length=cap
            )["input_ids"]
            lengths[start : start + len(ids)] = [len(x) for x in ids]
        return lengths

    def _encode(self, texts: Sequence[str], is_query: bool, progress: bool, what: str) -> list[np.ndarray]:
        from pretriever._progress import Progress

        order = np.argsort(-self.token_lengths(texts), kind="stable") if texts else np.zeros(0, int)
        out: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(texts)
        with Progress(len(texts), f"encoding {what}", what, enabled=progress) as bar:
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                for row, vectors in zip(rows, self.encode_batch([texts[i] for i in rows], is_query)):
                    out[row] = vectors
                bar.update(len(rows))
        return out

    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """One (tokens, dim) array per query."""
        return self._encode(texts, True, progress, "queries")

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """One (tokens, dim) array per document."""
        return self._encode(texts, False, progress, "documents")

    # -- a trainable projection --------------------------------------------------------------------
    def init_projection(self, texts: Sequence[str], sample_tokens: int = 50_000, seed: int = 0) -> None:
        """Set a new projection to the top principal directions of the texts' token vectors, so
        that training starts from (a compressed) zero-shot late interaction rather than noise."""
        import torch

        if not self.trained:
            raise ConfigError("this encoder has no projection to initialise (give dim=...)")
        import torch.nn.functional as F

        projection = self.modules["projection"]
        hidden = int(self.modules["transformer"].config.hidden_size)
        if projection.out_features > hidden:
            raise ConfigError(f"dim {projection.out_features} exceeds the model's {hidden} dimensions")
        features = self.tokenize(list(texts)[:256], is_query=False)  # settings read with the projection on
        with torch.inference_mode():
            inputs = {
                k: torch.as_tensor(v, device=projection.weight.device)
                for k, v in features.items()
                if k != "keep"
            }
            hidden_states = F.normalize(
                self.modules["transformer"](**inputs).last_hidden_state.float(), dim=-1
            )
        vectors = hidden_states.cpu().numpy()[features["keep"]]
        if len(vectors) < projection.out_features:
            raise ConfigError(
                f"{len(vectors)} token vectors from {len(texts)} texts cannot set a "
                f"{projection.out_features}-dim projection; give more (or longer) texts"
            )
        rng = np.random.default_rng(seed)
        if len(vectors) > sample_tokens:
            vectors = vectors[rng.choice(len(vectors), sample_tokens, replace=False)]
        _, _, vt = np.linalg.svd(vectors - 0.0, full_matrices=False)  # uncentred: MaxSim is an inner product
        with torch.no_grad():
            projection.weight.copy_(
                torch.as_tensor(vt[: projection.out_features], dtype=projection.weight.dtype)
            )
            if projection.bias is not None:
                projection.bias.zero_()
        for cached in ("_projection_sha256", "_torch_model", "_runner"):  # made from the old weights
            self.__dict__.pop(cached, None)

    # -- persistence -------------------------------------------------------------------------------
    def save(
        self,
        path: str | Path,
        *,
        overwrite: bool = False,
        provenance: dict[str, Any] | None = None,
        files: dict[str, str] | None = None,
    ) -> Path:
        """Write the model in PyLate's folder layout plus a manifest (zero-shot: an identity projection,
        so that PyLate reads it too)."""
        import torch
        from safetensors.torch import save_file

        path = Path(path)
        modules = self.modules
        settings = dict(self.settings)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            modules["transformer"].save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            hidden = int(modules["transformer"].config.hidden_size)
            weight = (
                modules["projection"].weight.detach().float().cpu() if self.trained else torch.eye(hidden)
            )
            bias = self.trained and modules["projection"].bias is not None
            (tmp / DENSE_DIR).mkdir()
            tensors = {"linear.weight": weight.contiguous()}
            if bias:
                tensors["linear.bias"] = modules["projection"].bias.detach().float().cpu().contiguous()
            save_file(tensors, str(tmp / DENSE_DIR / "model.safetensors"))
            _write(
                tmp / DENSE_DIR / "config.json",
                {
                    "in_features": hidden,
                    "out_features": int(weight.shape[0]),
                    "bias": bool(bias),
                    "activation_function": "torch.nn.modules.linear.Identity",
                    "use_residual": False,
                },
            )
            _write(
                tmp / "modules.json",
                [
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": DENSE_DIR, "type": PYLATE_DENSE},
                ],
            )
            _write(
                tmp / "sentence_bert_config.json",
                {"max_seq_length": int(settings["document_length"]), "do_lower_case": False},
            )
            _write(
                tmp / "config_sentence_transformers.json",
                {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "MaxSim", **settings},
            )
            for name, content in (files or {}).items():
                (tmp / name).write_text(content, encoding="utf-8")
            params = {k: v for k, v in self.spec().items() if k not in ("backend", "precision")}
            params["source"] = str(path.resolve())
            params["weights_sha256"] = backends.weights_sha256(tmp)
            params["projection_sha256"] = sha256_of_tensor(weight.numpy())
            write_manifest(
                tmp,
                kind=self.kind,
                format_version=FORMAT_VERSION,
                params=params,
                provenance=provenance or {},
                libraries=("torch", "transformers"),
            )
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, device: str | None = None, backend: str = "auto", precision: str = "auto"
    ) -> ColBERTEncoder:
        """Load a ColBERT folder (ours or PyLate's) or any encoder folder (zero-shot)."""
        return cls(backends.resolve_model(path), device=device, backend=backend, precision=precision)


def sha256_of_tensor(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def maxsim(query: np.ndarray, document: np.ndarray) -> float:
    """MaxSim of one query's token vectors with one document's: sum over query tokens of the best
    inner product with any document token."""
    return float((query @ document.T).max(axis=1).sum())


def colbert_from_spec(
    spec: dict[str, Any], *, device: str | None = None, backend: str = "auto", precision: str = "auto"
) -> ColBERTEncoder:
    """Rebuild the encoder an index manifest describes (``backends.from_spec``); refuse other weights."""
    settings = {k: spec.get(k) for k in SETTINGS}

    def make(model: str, b: str, p: str) -> ColBERTEncoder:
        return ColBERTEncoder(model, device=device, backend=b, precision=p, **settings)

    return backends.from_spec(spec, make, backend=backend, precision=precision)
