"""How far could better pseudo-queries take the `lexical` task? Teach it real queries instead.

A diagnostic, not a zero-label setting. The `lexical` task draws its pseudo-queries from the
documents: a title or a sentence. Here the same trainer and teacher (MiniLM + W x BM25) are given
the text of a split's real queries instead. Their qrels are never read. Both students are then
scored against the off-the-shelf model on the held-out splits. The real-query student bounds what
a perfect query generator could give with this teacher and this student. If that bound is small,
the teacher is what limits, not the pseudo-queries.

    python benchmarks/lexical_ceiling.py --dataset nfcorpus --queries train
    python benchmarks/lexical_ceiling.py --dataset nfcorpus --setting '{"lexical_feedback": 3}'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import append_results, delta_rows, delta_section, split_evaluations
from pretrain_sweep import run_setting

# the best mean-pooled setting of issue #5 (`mean-w3-kd4-topic` in benchmarks/sweeps/inbatch.json)
REFERENCE = {"tasks": "lexical", "lexical_weight": 3, "lexical_negatives": 7, "max_examples": 2048,
             "loop.lr": 2e-05, "lexical_inbatch": 4, "lexical_topic_batches": True}


@contextlib.contextmanager
def real_queries(queries: dict[str, str]) -> Iterator[None]:
    """While open, the `lexical` task draws ``queries`` (id -> text) instead of pseudo-queries."""
    from pretriever.training.pretrain import lexical

    drawn = lexical.pseudo_queries
    lexical.pseudo_queries = lambda docs, **kwargs: dict(queries)
    try:
        yield
    finally:
        lexical.pseudo_queries = drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--queries", default="train", help="split whose query texts teach the student")
    parser.add_argument("--setting", default="{}", help="JSON: changes to the reference setting")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from pretriever.data import load_dataset
    from pretriever.encoders.backends import torch_device
    from pretriever.encoders.dense import DenseEncoder

    dataset = load_dataset(args.dataset)
    if args.queries == "test":
        parser.error("--queries test would teach the split that is scored")
    selection = "dev" if "dev" in dataset.splits and args.queries != "dev" else args.queries
    changed = json.loads(args.setting)
    setting = {**REFERENCE, **changed}
    taught = dict(dataset.split_queries(args.queries))
    results = {}
    device = torch_device(None)
    with tempfile.TemporaryDirectory(prefix="lexical-ceiling-") as work:
        students = {"MiniLM off the shelf": "minilm"}
        students["pseudo-queries (title or sentence)"], _ = run_setting(
            {"name": "pseudo", **setting}, args.dataset, "minilm", Path(work), device)
        with real_queries(taught):
            students[f"real {args.queries} queries, text only"], _ = run_setting(
                {"name": "real", **setting}, args.dataset, "minilm", Path(work), device)
        for label, model in students.items():
            encoder = DenseEncoder(str(model), backend="torch", precision="float32")
            results[label] = tuple(split_evaluations(dataset, encoder, [selection, "test"], ["nDCG@10"]))
            print(label, [round(e.metrics["nDCG@10"], 4) for e in results[label]], flush=True)

    section = delta_section(
        "The lexical task taught real queries: a bound on better pseudo-queries",
        ("torch", "sentence-transformers", "transformers", "bm25s"),
        f"Setting: `mean-w3-kd4-topic`{' with ' + json.dumps(changed) if changed else ''}. One student "
        f"is taught pseudo-queries drawn from the corpus, the other the text of the {args.queries} "
        f"split's {len(taught)} queries (never their qrels); torch fp32. "
        + ("The selection column is the split that taught the second student. "
           if selection == args.queries else "") + "Δ (p) on test against MiniLM.",
        "student", delta_rows(args.dataset, selection, results, "MiniLM off the shelf"))
    print(section)
    if not args.no_append:
        append_results(section)


if __name__ == "__main__":
    main()
