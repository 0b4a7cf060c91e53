"""How good is the `lexical` pre-training task's teacher on real queries, and how much of it does the
student keep?

The teacher (the starting model plus W x BM25 over their top 30, `pretriever.training.pretrain.lexical`)
ranks each split's real queries; nDCG@10 per weight W shows the ceiling a student distilled from it
could reach. The student itself is measured by `pretrain.py`. Reads qrels: a diagnostic, not a
pre-training step.

    python benchmarks/lexical_teacher.py --splits scifact:train,scifact:test,nfcorpus:dev,nfcorpus:test
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from _common import append_results, machine_line

LIBS = ("torch", "sentence-transformers", "transformers", "bm25s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", default="scifact:train,scifact:test,nfcorpus:dev,nfcorpus:test")
    parser.add_argument("--weights", default="0,1,2,3,5,10")
    parser.add_argument("--feedback", default="0", help="comma-separated K or K:BETA, each a teacher with "
                        "Rocchio feedback from its top K documents at weight BETA (default 1); 0: none")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    from pretriever.data.dataset import load_dataset
    from pretriever.evaluation import evaluate
    from pretriever.training.pretrain.lexical import LexicalTeacher
    from pretriever.training.pretrain.trainer import PretrainConfig

    defaults = PretrainConfig(dataset="", out="")
    weights = [float(w) for w in args.weights.split(",")]
    feedbacks = [(int(f.split(":")[0]), float(f.split(":")[1]) if ":" in f else 1.0)
                 for f in args.feedback.split(",")]
    by_dataset: dict[str, list[str]] = {}
    for item in args.splits.split(","):
        name, split = item.split(":")
        by_dataset.setdefault(name, []).append(split)
    rows = []
    for name, splits in by_dataset.items():
        dataset = load_dataset(name)
        teacher = LexicalTeacher(dataset.corpus, defaults.base, weight=0.0, temperature=defaults.temperature,
                                 depth=defaults.lexical_depth, max_length=defaults.max_length)
        for split in splits:
            queries, qrels = dict(dataset.split_queries(split)), dataset.qrels(split)
            for teacher.feedback, teacher.feedback_weight in feedbacks:
                scores = []
                for weight in weights:
                    teacher.weight = weight
                    scores.append(evaluate(qrels, teacher.scores(queries), ["nDCG@10"]).metrics["nDCG@10"])
                    print(name, split, teacher.feedback, teacher.feedback_weight, weight, f"{scores[-1]:.4f}",
                          flush=True)
                rocchio = (f", Rocchio top {teacher.feedback} at {teacher.feedback_weight:g}"
                           if teacher.feedback else "")
                rows.append(f"| {name} {split} ({len(queries)} queries){rocchio} | "
                            + " | ".join(f"{s:.4f}" for s in scores) + " |")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## The lexical task's teacher on real queries ({stamp})", "", machine_line(LIBS), "",
        f"nDCG@10 of the teacher (MiniLM at {defaults.max_length} tokens + W x BM25, top "
        f"{defaults.lexical_depth} of each); W = 0 is MiniLM alone at that length. With Rocchio, the "
        "teacher's dense query vector is moved towards the mean of its own top K documents "
        "(`--lexical-feedback`), then the candidates are scored again.", "",
        "| split | " + " | ".join(f"W={w:g}" for w in weights) + " |",
        "|---|" + "---:|" * len(weights), *rows, ""])
    print(section)
    if not args.no_append:
        append_results(section)


if __name__ == "__main__":
    main()
