"""Zero-label pre-training: does each task help MiniLM on a corpus it has never seen labels for?

For each dataset, every setting is pre-trained on the corpus alone (`pretriever pretrain`), then
the test split is searched with the pre-trained model (`pretriever evaluate --retriever dense`)
and compared, per query and with a paired randomization test, against the off-the-shelf model
and BM25. Optionally also pre-train-then-fine-tune against fine-tune-only (`--finetune ARGS`,
the same `pretriever train` arguments for both). Models are kept under --work, so a rerun skips
finished pre-training (its time is read back from the model's manifest). Every command run is
listed in the appended section.

    python benchmarks/pretrain.py --datasets scifact,nfcorpus --tasks ict bfs cropping prop retromae \
        dupmae ict,bfs --pretrain-args "--max-examples 2048 --lr 1e-5"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import append_results, machine_line

LIBS = ("torch", "sentence-transformers", "transformers")
METRICS = ["nDCG@10", "Recall@100"]


def run(cmd: list[str], log: list[str]) -> float:
    """Run a pretriever command (logged for the results section); seconds taken."""
    log.append(shlex.join(cmd))
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pretriever", *cmd[1:]], check=True)
    return time.perf_counter() - start


def evaluation(dataset: str, retriever: str, model: str | None, run_file: Path, log: list[str]):
    from pretriever.data.dataset import load_dataset
    from pretriever.evaluation import evaluate
    from pretriever.runs import read_run

    if not run_file.is_file():
        cmd = ["pretriever", "evaluate", "--dataset", dataset, "--retriever", retriever,
               "--save-run", str(run_file)] + (["--model", model] if model else [])
        run(cmd, log)
    qrels = load_dataset(dataset).qrels("test")
    return evaluate(qrels, read_run(run_file)[0], METRICS, name=run_file.stem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--tasks", nargs="+",
                        default=["ict", "bfs", "cropping", "prop", "retromae", "dupmae"])
    parser.add_argument("--pretrain-args", default="",
                        help="extra `pretriever pretrain` arguments for every run")
    parser.add_argument("--finetune", default=None, metavar="ARGS",
                        help="also fine-tune on SciFact train from the --finetune-from setting and from "
                        "the off-the-shelf model with these `pretriever train` arguments")
    parser.add_argument("--finetune-from", default="ict,bfs,cropping",
                        help="the pre-training setting to fine-tune (fixed in advance, not picked on test)")
    parser.add_argument("--work", default="/tmp/pretriever-bench-pretrain")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    from pretriever.evaluation import compare

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    extra = shlex.split(args.pretrain_args)
    rows = []
    for dataset in args.datasets.split(","):
        bm25 = evaluation(dataset, "bm25", None, work / f"{dataset}-bm25.trec", log)
        base = evaluation(dataset, "dense", None, work / f"{dataset}-minilm.trec", log)
        rows.append((dataset, "BM25", bm25, None, None))
        rows.append((dataset, "MiniLM off the shelf", base, None, None))
        for tasks in args.tasks:
            out = work / f"{dataset}-{tasks.replace(',', '+')}"
            cmd = ["pretriever", "pretrain", "--dataset", dataset, "--tasks", tasks, "--out", str(out),
                   "--overwrite", *extra]
            if out.is_dir():  # still listed: the settings are read back from its manifest
                log.append(shlex.join(cmd) + "  # model from an earlier run of this command, reused")
            else:
                run(cmd, log)
            info = json.loads((out / "manifest.json").read_text())["provenance"]["pretraining"]
            ev = evaluation(dataset, "dense", str(out), out.with_suffix(".trec"), log)
            rows.append((dataset, tasks, ev, compare([base, ev], "nDCG@10")[0], info))
        print(f"{dataset}: done", flush=True)

    lines = ["| dataset | setting | nDCG@10 | Δ vs off-the-shelf (p) | Recall@100 | examples "
             "| pre-training |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for dataset, name, ev, cmp, info in rows:
        delta = f"{cmp.delta:+.4f} (p={cmp.p_value:.3f})" if cmp else ""
        examples = sum(info["examples_per_epoch"].values()) if info else ""
        timing = f"{info['seconds'] / 60:.1f} min, {info['examples_per_second']:.1f} ex/s" if info else ""
        lines.append(f"| {dataset} | {name} | {ev.metrics['nDCG@10']:.4f} | {delta} | "
                     f"{ev.metrics['Recall@100']:.4f} | {examples} | {timing} |")

    start_from = work / f"scifact-{args.finetune_from.replace(',', '+')}"
    if args.finetune and start_from.is_dir():
        ft = shlex.split(args.finetune)
        lines += ["", "Pre-train then fine-tune vs fine-tune only (SciFact train -> test, dense):", "",
                  "| start | nDCG@10 | Δ (p) | Recall@100 |", "|---|---:|---:|---:|"]
        evs = []
        for label, base_model in (("MiniLM", "minilm"), (f"pre-trained ({args.finetune_from})",
                                                         str(start_from))):
            out = work / f"ft-{Path(base_model).name}"
            if not out.is_dir():
                run(["pretriever", "train", "--dataset", "scifact", "--base", base_model, "--out", str(out),
                     "--overwrite", *ft], log)
            evs.append((label, evaluation("scifact", "dense", str(out), out.with_suffix(".trec"), log)))
        cmp = compare([evs[0][1], evs[1][1]], "nDCG@10")[0]
        for i, (label, ev) in enumerate(evs):
            delta = f"{cmp.delta:+.4f} (p={cmp.p_value:.3f})" if i else ""
            lines.append(f"| {label} | {ev.metrics['nDCG@10']:.4f} | {delta} | "
                         f"{ev.metrics['Recall@100']:.4f} |")

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## Zero-label pre-training ({stamp})", "", machine_line(LIBS), "",
        "Test split, dense retrieval with the pre-trained model; Δ and p against the off-the-shelf "
        "model (paired randomization test, 10,000 permutations). Pre-training reads only the corpus.",
        "", *lines, "", "Commands:", "", "```", *log, "```", ""])
    print(section)
    if not args.no_append:
        append_results(section)


if __name__ == "__main__":
    main()
