"""pretriever: turn a text corpus into the best retriever that can be had for it.

The public API is the names in ``__all__``; everything else is private. Importing pretriever
loads nothing heavy (no bm25s, ranx or torch) and touches no global state: names resolve on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # data
    "Corpus": "pretriever.data.corpus",
    "Dataset": "pretriever.data.dataset",
    "load_dataset": "pretriever.data.dataset",
    "read_corpus": "pretriever.data.corpus",
    "read_queries": "pretriever.data.corpus",
    "read_qrels": "pretriever.data.qrels",
    # plain types
    "Document": "pretriever.types",
    "Hit": "pretriever.types",
    # indexes
    "BM25Index": "pretriever.indexes.bm25",
    "Index": "pretriever.indexes.base",
    "load_index": "pretriever.retrieval.loading",
    "FlatIndex": "pretriever.indexes.dense",
    "FaissIndex": "pretriever.indexes.ann",
    "MaxSimIndex": "pretriever.indexes.late_interaction",
    "PlaidIndex": "pretriever.indexes.plaid",
    "SparseIndex": "pretriever.indexes.sparse",
    "SeismicSparseIndex": "pretriever.indexes.sparse",
    # encoders
    "DenseEncoder": "pretriever.encoders.dense",
    "Reranker": "pretriever.encoders.cross",
    "ColBERTEncoder": "pretriever.encoders.colbert",
    "SparseEncoder": "pretriever.encoders.sparse",
    # training
    "TrainConfig": "pretriever.training.biencoder",
    "train": "pretriever.training.registry",
    "RerankerConfig": "pretriever.training.reranker",
    "train_reranker": "pretriever.training.reranker",
    "soup": "pretriever.training.soups",
    "PretrainConfig": "pretriever.training.pretrain.pretrainer",
    "pretrain": "pretriever.training.pretrain.pretrainer",
    "ColBERTConfig": "pretriever.training.colbert",
    "train_colbert": "pretriever.training.colbert",
    "SparseTrainConfig": "pretriever.training.sparse",
    "SparsePretrainConfig": "pretriever.training.sparse",
    "train_sparse": "pretriever.training.sparse",
    # retrieval
    "Fusion": "pretriever.retrieval.fusion",
    "fuse": "pretriever.retrieval.fusion",
    "Pipeline": "pretriever.retrieval.pipeline",
    "quickstart": "pretriever._quickstart",
    "build": "pretriever.recipe",
    "BuildConfig": "pretriever.recipe",
    "RM3": "pretriever.feedback",
    "LiveIndex": "pretriever.retrieval.live",
    "Rocchio": "pretriever.feedback",
    # runs
    "read_run": "pretriever.runs",
    "write_run": "pretriever.runs",
    # evaluation
    "Evaluation": "pretriever.evaluation.measures",
    "evaluate": "pretriever.evaluation.measures",
    "compare": "pretriever.evaluation.significance",
    # errors
    "PretrieverError": "pretriever.errors",
    "DataFormatError": "pretriever.errors",
    "DataNotFoundError": "pretriever.errors",
    "ManifestError": "pretriever.errors",
    "NotBuiltError": "pretriever.errors",
    "MissingDependencyError": "pretriever.errors",
    "ConfigError": "pretriever.errors",
    "DuplicateDocumentError": "pretriever.errors",
    "UnknownDocumentError": "pretriever.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pretriever' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
