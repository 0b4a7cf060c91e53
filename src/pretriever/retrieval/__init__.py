"""Retrieval beyond a single index: fusion, pipelines, and resolving retriever specs."""

from pretriever.retrieval.fusion import Fusion, fuse, tune_weights
from pretriever.retrieval.pipeline import Pipeline
from pretriever.retrieval.spec import RETRIEVER_NAMES, retrieve

__all__ = ["RETRIEVER_NAMES", "Fusion", "Pipeline", "fuse", "retrieve", "tune_weights"]
