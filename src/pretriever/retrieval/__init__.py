"""Retrieval beyond a single index: fusion, pipelines, and resolving retriever specs."""

from pretriever.retrieval.fusion import Fusion, fuse, tune_weights
from pretriever.retrieval.loading import load_index
from pretriever.retrieval.pipeline import Pipeline
from pretriever.retrieval.spec import RETRIEVER_NAMES, retrieve

__all__ = ["RETRIEVER_NAMES", "Fusion", "Pipeline", "fuse", "load_index", "retrieve", "tune_weights"]
