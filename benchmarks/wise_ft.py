"""WiSE-FT sweep: a fine-tuned model mixed with its base, the mixing weight judged on dev.

For each weight a, the mix base + a * (fine-tuned - base) is searched on the dev and the test
split (dense retrieval over the whole corpus, torch fp32) and nDCG@10 of both is printed. For
a <= 1 it is the soup (1 - a) * base + a * fine-tuned; a > 1 extrapolates along the fine-tuning
direction (task arithmetic, Ilharco et al. 2023), which ``soup`` refuses, so the mix is made in
memory. Several ``--model`` folders (comma-separated, e.g. pre-training runs with other seeds or
settings) are first averaged into a uniform soup. Choose a by dev; test is printed for every a
only so the table can show what the choice cost. A model that records another max length than the
base (one trained with ``--max-length 128`` before the trainer kept the base's length) is first
copied with the base's max length, since a soup must share it and the weights do not depend on it.

    python benchmarks/wise_ft.py --model models/nf-tasb --dataset nfcorpus --alphas 0.3,0.5,0.7,1
    python benchmarks/wise_ft.py --model nf-lexical --dataset nfcorpus --alphas 0,1,2,3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import split_evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the fine-tuned model folder (comma-separated: "
                        "their uniform soup)")
    parser.add_argument("--base", default="minilm", help="the model it was fine-tuned from")
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--alphas", default="0.3,0.5,0.7,1", help="weights of the fine-tuned model "
                        "(above 1: extrapolation)")
    parser.add_argument("--dev-split", default="dev", help="the split a is chosen on (SciFact: train)")
    parser.add_argument("--work", default=None, help="folder for the soups (default: a temporary one)")
    args = parser.parse_args()

    from pretriever.data import load_dataset
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.training.soups import soup

    dataset = load_dataset(args.dataset)
    work = Path(args.work or tempfile.mkdtemp(prefix="wise-"))

    def encoder(path: str | Path) -> DenseEncoder:
        return DenseEncoder(path, backend="torch", precision="float32")

    base = encoder(args.base)
    length = base.st.max_seq_length
    models = []
    for i, path in enumerate(args.model.split(",")):
        tuned = encoder(path)
        if tuned.st.max_seq_length != length:
            tuned.st.max_seq_length = length
            copy = str(tuned.save(work / f"fine-tuned-{i}-{length}", overwrite=True))
            print(f"{path} copied with the base's max length {length} -> {copy}")
            path = copy
        models.append(path)
    if len(models) > 1:
        models = [str(soup(models, work / "students", overwrite=True).folder)]
    mixed = encoder(models[0])
    start = {k: v.float() for k, v in base.st.state_dict().items() if v.is_floating_point()}
    direction = {k: v.float() - start[k] for k, v in mixed.st.state_dict().items() if k in start}
    for alpha in (float(a) for a in args.alphas.split(",")):
        mixed.st.load_state_dict({k: start[k] + alpha * d for k, d in direction.items()}, strict=False)
        mixed.__dict__.pop("_weights_sha256", None)  # weights change between alphas
        dev, test = (e.metrics["nDCG@10"] for e in
                     split_evaluations(dataset, mixed, [args.dev_split, "test"], ["nDCG@10"]))
        print(f"a = {alpha}: {args.dev_split} nDCG@10 {dev:.4f}, test nDCG@10 {test:.4f}", flush=True)


if __name__ == "__main__":
    main()
