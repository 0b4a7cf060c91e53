"""First-stage indexes behind one protocol: build(corpus) -> search(queries, k) -> save/load."""

from pretriever.indexes.base import Index, search_one
from pretriever.indexes.bm25 import BM25Index

__all__ = ["BM25Index", "Index", "search_one"]
