"""IDF pooling alone: MiniLM with its mean pooling weighted by the corpus' IDF, no training.

For each dataset and power p, the off-the-shelf model's tokens are weighted by (IDF / mean IDF)^p,
counted on the corpus alone (`pretriever.encoders.idf_pooling`), and the selection split and the
test split are searched (dense, the default inference path). Δ and p on test are against the
off-the-shelf model (paired randomization test). `pretriever pretrain --idf-pooling P` starts its
teacher and student from exactly this model.

    python benchmarks/idf_pooling.py --datasets scifact,nfcorpus --powers 0.5,1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import append_results, delta_rows, delta_section, selection_split, split_evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--powers", default="0.5,1", help="comma-separated powers of the IDF weights")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from pretriever.data import load_dataset
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.encoders.idf_pooling import save_idf_pooled

    rows = []
    with tempfile.TemporaryDirectory(prefix="idf-pooling-") as tmp:
        for name in args.datasets.split(","):
            dataset = load_dataset(name)
            selection = selection_split(dataset)
            runs: dict[str, tuple] = {}
            for power in [0.0, *(float(p) for p in args.powers.split(","))]:
                model: str | Path = "minilm"
                if power:
                    model = save_idf_pooled(model, dataset.corpus.contents(), Path(tmp) / f"{name}-{power}",
                                            power=power)
                label = f"IDF^{power:g}" if power else "off the shelf"
                runs[label] = tuple(split_evaluations(dataset, DenseEncoder(model), [selection, "test"],
                                                      ["nDCG@10"], name=f"{name}-{power}"))
                print(name, power, [round(e.metrics["nDCG@10"], 4) for e in runs[label]], flush=True)
            rows += delta_rows(name, selection, runs, "off the shelf")

    section = delta_section(
        "IDF pooling alone, no training", ("torch", "sentence-transformers", "transformers", "openvino"),
        "MiniLM, mean pooling weighted by (IDF / mean IDF)^p counted on the corpus; dense, default "
        "inference path. Δ (p) on test against the off-the-shelf model.", "pooling", rows)
    print(section)
    if not args.no_append:
        append_results(section)


if __name__ == "__main__":
    main()
