"""The public API is small and pinned: adding or removing a name must be a deliberate change."""

import subprocess
import sys

import pretriever

EXPECTED = [
    "BM25Index", "ConfigError", "Corpus", "DataFormatError", "DataNotFoundError", "Dataset",
    "Document", "Evaluation", "Hit", "Index", "ManifestError", "MissingDependencyError",
    "NotBuiltError", "PretrieverError", "__version__", "compare", "evaluate", "load_dataset",
    "load_index", "read_corpus", "read_qrels", "read_queries", "read_run", "write_run",
    "DenseEncoder", "FaissIndex", "FlatIndex", "Fusion", "Pipeline", "fuse", "quickstart",
    "Reranker", "TrainConfig", "train", "RerankerConfig", "train_reranker", "soup",
    "PretrainConfig", "pretrain", "ColBERTEncoder", "MaxSimIndex", "PlaidIndex", "ColBERTConfig",
    "train_colbert", "build", "BuildConfig", "RM3", "Rocchio", "LiveIndex", "DuplicateDocumentError",
    "UnknownDocumentError", "SparseEncoder", "SparseIndex", "SeismicSparseIndex", "SparseTrainConfig",
    "SparsePretrainConfig", "train_sparse",
]


def test_all_is_pinned() -> None:
    assert sorted(pretriever.__all__) == sorted(EXPECTED)


def test_every_exported_name_resolves() -> None:
    for name in pretriever.__all__:
        assert getattr(pretriever, name) is not None


def test_import_is_light() -> None:
    code = (
        "import sys, pretriever; heavy = {'torch', 'bm25s', 'ranx', 'numba', 'numpy'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
