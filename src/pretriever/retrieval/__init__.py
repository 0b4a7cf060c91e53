"""Turning a retriever spec ("bm25", an index folder, a run file) into a run over a dataset."""

from pretriever.retrieval.spec import RETRIEVER_NAMES, retrieve

__all__ = ["RETRIEVER_NAMES", "retrieve"]
