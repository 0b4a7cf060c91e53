"""Data layer: BEIR folders, plain JSONL/TSV corpora, BEIR and TREC qrels, validated on read."""

from pretriever.data.corpus import Corpus, read_corpus, read_queries
from pretriever.data.dataset import Dataset, load_dataset, resolve_dataset
from pretriever.data.qrels import read_qrels

__all__ = ["Corpus", "Dataset", "load_dataset", "read_corpus", "read_qrels", "read_queries",
           "resolve_dataset"]
