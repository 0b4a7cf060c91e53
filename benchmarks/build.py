"""`pretriever build` on every shared collection: what each stage adds, the final pipeline against
the off-the-shelf hybrid, and the wall time.

    python benchmarks/build.py [--datasets scifact,nfcorpus,cranfield,lisa,adi]
                               [--labelled scifact,nfcorpus] [--budget-minutes 30] [--no-append]

Each dataset is built with no labels (the bare command, `pretriever build --dataset D --out X`),
and each of ``--labelled`` again with its train split (`--train-split train --budget-minutes N`).
Every number is the build's own report: test nDCG@10 read once after every choice, the paired
randomization test (10,000 permutations, seed 42) against the off-the-shelf hybrid (BM25 + MiniLM,
min-max 0.5 / 0.5), and the build's wall time on this machine (model loading and the test report
included). Builds are written under /tmp/pretriever-bench/build-* and replaced on each run.

Unless --no-append, the section replaces this benchmark's in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, record_section

CACHE = Path("/tmp/pretriever-bench")
ZERO_ROWS = ("bm25", "dense (off the shelf)", "hybrid (off the shelf)", "+ bm25 feedback", "built pipeline")


def one(name: str, train_split: str | None, budget: float | None, reuse: bool) -> dict:
    """The build's build.json (plain data), building it unless --reuse finds it already built."""
    import json

    from pretriever.recipe import BuildConfig, build

    out = CACHE / f"build-{name}{'-' + train_split if train_split else ''}"
    if not (reuse and (out / "build.json").is_file()):
        config = BuildConfig(
            dataset=name,
            out=str(out),
            train_split=train_split,
            budget_minutes=budget if train_split else None,
        )
        build(config, overwrite=True, progress=False, log=lambda m: print(f"  {name}: {m}", flush=True))
    data = json.loads((out / "build.json").read_text(encoding="utf-8"))
    data["command"] = f"pretriever build --dataset {name} --out OUT" + (
        f" --train-split {train_split} --budget-minutes {budget:g}" if train_split else ""
    )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus,cranfield,lisa,adi")
    parser.add_argument("--labelled", default="scifact,nfcorpus")
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read the builds already under /tmp/pretriever-bench instead of building again",
    )
    args = parser.parse_args()
    zero, labelled = [], []
    for name in filter(None, args.datasets.split(",")):
        zero.append((name, one(name, None, None, args.reuse)))
    for name in filter(None, args.labelled.split(",")):
        labelled.append((name, one(name, "train", args.budget_minutes, args.reuse)))

    def ndcg(test: dict, row: str) -> str:
        run = test["runs"].get(row)
        return f"{run['nDCG@10']:.4f}" if run else "-"

    lines = [
        f"## Building: `pretriever build` on every shared collection "
        f"({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC})",
        "",
        machine_line(("torch", "transformers", "openvino", "faiss-cpu", "bm25s")),
        "",
        "No labels (the bare command: BM25 with RM3 on queries of <= 3 terms, dense MiniLM, zero-shot "
        "MaxSim through PLAID, min-max 0.5/0.5 fusion). Test nDCG@10, read after every choice; "
        "p: paired randomization test of the built pipeline against the off-the-shelf hybrid.",
        "",
        "| set | BM25 | dense | hybrid (off the shelf) | + RM3 (short queries) | + MaxSim = built | "
        "Δ vs hybrid | p | wall time | command |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    deltas = []
    for name, run in zero:
        test = run["test"]
        sig = {c["run"]: c for c in test["significance"]}["built pipeline"]
        deltas.append(sig["delta"])
        lines.append(
            f"| {name} | "
            + " | ".join(ndcg(test, r) for r in ZERO_ROWS)
            + f" | {sig['delta']:+.4f} | {sig['p_value']:.4f} | {run['seconds'] / 60:.1f} min | "
            f"`{run['command']}` |"
        )
    if deltas:
        lines += [
            "",
            f"Mean Δ over {len(deltas)} sets: {sum(deltas) / len(deltas):+.4f}; smallest {min(deltas):+.4f}.",
        ]
    if labelled:
        lines += [
            "",
            "With labels (train split; dev = the dataset's dev split, else 10% of the training "
            "queries held out): each stage's dev nDCG@10 and whether it was kept.",
            "",
            "| set | zero-label dev | stages (dev, kept?) | test: hybrid | zero-label | built | "
            "Δ vs hybrid | p | wall time | command |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, run in labelled:
            test = run["test"]
            sig = {c["run"]: c for c in test["significance"]}["built pipeline"]
            stages = [s for s in run["stages"] if s["dev"] is not None]
            zero_dev = f"{stages[0]['dev']:.4f}" if stages else "-"
            trail = "; ".join(
                f"{s['name']} {s['dev']:.4f} {'kept' if s['kept'] else 'dropped'}" for s in stages[1:]
            )
            lines.append(
                f"| {name} | {zero_dev} | {trail} | {ndcg(test, 'hybrid (off the shelf)')} | "
                f"{ndcg(test, '+ late interaction')} | {ndcg(test, 'built pipeline')} | "
                f"{sig['delta']:+.4f} | {sig['p_value']:.4f} | {run['seconds'] / 60:.1f} min | "
                f"`{run['command']}` |"
            )
    section = "\n".join(lines)
    print(section)
    if not args.no_append:
        record_section(section)


if __name__ == "__main__":
    main()
