"""Post-hoc corpus transforms of MiniLM's vectors, no training: centring, whitening, all-but-the-top.

A zero-label way to adapt an embedder to a corpus that needs no training: fit a linear map on the
corpus' own document vectors and apply it to queries and documents. Measured here because users of
sentence embedders often ask for it:
- centring: subtract the corpus' mean vector (a share ``a`` of it), then L2-normalise;
- centring the documents only (queries left as they are);
- soft whitening (BERT-whitening, Su et al. 2021): centre, then rotate into the covariance's
  eigenbasis and divide each direction by sqrt(eigenvalue + s * mean eigenvalue), so that ``s``
  keeps weak directions from being blown up;
- all-but-the-top (Mu & Viswanath 2018): centre and project out the top ``D`` principal directions.
Each is searched exactly (inner product, top 100) on the selection split and on test; Δ and p on
test are against the untouched vectors (paired randomization test).

    python benchmarks/isotropy.py --datasets scifact,nfcorpus
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from _common import append_results, delta_rows, delta_section, selection_split

Transform = Callable[[np.ndarray, bool], np.ndarray]  # (vectors, are they documents?) -> vectors


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def transforms(docs: np.ndarray) -> dict[str, Transform]:
    """Every transform measured, fitted on the corpus' document vectors alone."""
    mean = docs.mean(axis=0)
    eigenvalues, basis = np.linalg.eigh(np.cov((docs - mean).T))  # ascending

    def linear(matrix: np.ndarray, docs_only: bool = False, share: float = 1.0) -> Transform:
        return lambda x, is_doc: x if docs_only and not is_doc else _unit((x - share * mean) @ matrix)

    identity = np.eye(docs.shape[1], dtype=docs.dtype)
    out: dict[str, Transform] = {"untouched": lambda x, is_doc: x}
    for share in (0.5, 1.0):
        out[f"centre (a = {share:g})"] = linear(identity, share=share)
        out[f"centre documents only (a = {share:g})"] = linear(identity, docs_only=True, share=share)
    for shrink in (0.5, 1.0):
        scale = (eigenvalues + shrink * eigenvalues.mean()) ** -0.5
        out[f"soft whitening (s = {shrink:g})"] = linear(basis @ np.diag(scale) @ basis.T)
    for top in (1, 2, 4):
        out[f"all-but-the-top (D = {top})"] = linear(identity - basis[:, -top:] @ basis[:, -top:].T)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from pretriever.data import load_dataset
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.evaluation import evaluate
    from pretriever.indexes.dense import exact_search

    encoder = DenseEncoder(args.model, backend="torch", precision="float32")
    rows = []
    for name in args.datasets.split(","):
        dataset = load_dataset(name)
        ids = dataset.corpus.ids
        docs = encoder.encode_documents(dataset.corpus.contents())
        splits = [selection_split(dataset), "test"]
        queries = {split: dict(dataset.split_queries(split)) for split in splits}
        vectors = {split: encoder.encode_queries(list(q.values())) for split, q in queries.items()}
        results: dict[str, list] = {}
        for label, transform in transforms(docs).items():
            mapped = transform(docs, True)
            for split in splits:
                idx, val = exact_search(transform(vectors[split], False), mapped, 100)
                run = {q: {ids[j]: float(s) for j, s in zip(idx[i], val[i])}
                       for i, q in enumerate(queries[split])}
                results.setdefault(label, []).append(
                    evaluate(dataset.qrels(split), run, ["nDCG@10"], name=f"{name}-{label}-{split}"))
            print(name, label, [round(e.metrics["nDCG@10"], 4) for e in results[label]], flush=True)
        rows += delta_rows(name, splits[0], results, "untouched")

    section = delta_section(
        "Corpus-fitted transforms of the vectors, no training",
        ("torch", "sentence-transformers", "transformers"),
        f"{args.model} (torch fp32), each transform fitted on the corpus' document vectors alone and "
        "applied to queries and documents; exact inner-product search. Δ (p) on test against the "
        "untouched vectors.", "transform", rows)
    print(section)
    if not args.no_append:
        append_results(section)


if __name__ == "__main__":
    main()
