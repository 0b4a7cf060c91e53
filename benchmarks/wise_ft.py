"""WiSE-FT sweep: a fine-tuned model mixed with its base, the mixing weight judged on dev.

For each weight a, the soup (1 - a) * base + a * fine-tuned is written (``soup(..., weights=)``),
then the dev and the test split are searched with it (dense retrieval over the whole corpus, torch
fp32) and nDCG@10 of both is printed. Choose a by dev; test is printed for every a only so the
table can show what the choice cost. A model that records another max length than the base (one
trained with ``--max-length 128`` before the trainer kept the base's length) is first copied with
the base's max length, since a soup must share it and the weights do not depend on it.

    python benchmarks/wise_ft.py --model models/nf-tasb --dataset nfcorpus --alphas 0.3,0.5,0.7,1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the fine-tuned model folder")
    parser.add_argument("--base", default="minilm", help="the model it was fine-tuned from")
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--alphas", default="0.3,0.5,0.7,1", help="weights of the fine-tuned model")
    parser.add_argument("--work", default=None, help="folder for the soups (default: a temporary one)")
    args = parser.parse_args()

    from pretriever.data import load_dataset
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.training.soups import soup

    dataset = load_dataset(args.dataset)
    work = Path(args.work or tempfile.mkdtemp(prefix="wise-"))

    def encoder(path: str | Path) -> DenseEncoder:
        return DenseEncoder(path, backend="torch", precision="float32")

    model = args.model
    length = encoder(args.base).st.max_seq_length
    tuned = encoder(model)
    if tuned.st.max_seq_length != length:
        tuned.st.max_seq_length = length
        model = str(tuned.save(work / f"fine-tuned-{length}", overwrite=True))
        print(f"{args.model} copied with the base's max length {length} -> {model}")
    for alpha in (float(a) for a in args.alphas.split(",")):
        out = work / f"wise-{alpha}"
        soup([args.base, model], out, weights=[1 - alpha, alpha], overwrite=True)
        dev, test = _dev_and_test(dataset, encoder(out))
        print(f"a = {alpha}: dev nDCG@10 {dev:.4f}, test nDCG@10 {test:.4f}", flush=True)


def _dev_and_test(dataset: Any, encoder: Any) -> tuple[float, float]:
    """nDCG@10 on dev and on test, from one encoding of the corpus (dev_scorer refuses the test
    split by design, and would encode the corpus a second time)."""
    from pretriever.evaluation.measures import evaluate
    from pretriever.indexes.dense import FlatIndex

    with tempfile.TemporaryDirectory(prefix="wise-") as work:
        index = FlatIndex(encoder, progress=False, work_dir=work).build(dataset.corpus)
        return tuple(evaluate(dataset.qrels(split), index.search(dataset.split_queries(split), k=100),
                              ["nDCG@10"]).metrics["nDCG@10"] for split in ("dev", "test"))


if __name__ == "__main__":
    main()
