r"""Sweep: run a list of training settings through the real command, score each model, choose honestly.

Each setting is one command of a trainer in `training.registry.TRAINERS` (`pretrain` by default,
or `biencoder` / `adore`, which fine-tune) on each dataset, run as a child process exactly as a user
would run it (an empty setting is the bare command, the defaults),
its wall time and peak memory (the child's maximum resident set) measured. Each model is then
searched (dense, exact, torch fp32) on a selection split (dev where the dataset has one, else train)
and on test, against the model the settings start from, with a paired randomization test per query.
A trainer that reads labels is refused on a dataset without a dev split: its selection split would
be the training queries.
The setting reported as chosen is the one whose smaller gain over the starting model on the
datasets' selection splits is the largest: chosen without looking at test.

A settings file is a JSON list; each entry has a "name" and any settings of the trainer's config,
dotted for nested ones, passed as `--set KEY=VALUE`:

    [{"name": "default"},
     {"name": "ict", "tasks": "ict"},
     {"name": "lexical-w2", "lexical.weight": 2, "loop.lr": 1e-5}]

    python benchmarks/sweep.py --settings benchmarks/sweeps/default.json \
        --title 'Pre-training with the default recipe (bare `pretriever pretrain`)'
    python benchmarks/sweep.py --trainer biencoder --settings my-settings.json --datasets nfcorpus

The section written to RESULTS.md is named by --title (default: "Sweep of SETTINGS_FILE"), so a
rerun replaces it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import REPO, machine_line, record_section, selection_split, split_evaluations

LIBS = ("torch", "sentence-transformers", "transformers", "openvino")
METRICS = ["nDCG@10", "Recall@100"]


def scores(dataset: Any, model: str, splits: list[str]) -> dict[str, Any]:
    """Per-query nDCG@10 / Recall@100 of ``model`` on each split (one corpus encoding, torch fp32)."""
    from pretriever.encoders.dense import DenseEncoder

    encoder = DenseEncoder(model, backend="torch", precision="float32")
    return {split: {"metrics": result.metrics, "per_query": result.per_query}
            for split, result in zip(splits, split_evaluations(dataset, encoder, splits, METRICS))}


def trainers() -> dict[str, Any]:
    """The registered trainers whose models a dense index can score (bi-encoders)."""
    from pretriever.training.registry import TRAINERS

    return {name: t for name, t in TRAINERS.items() if t.model == "bi-encoder"}


def command(trainer: Any, dataset: str, out: Path, base: str, setting: dict[str, Any]) -> list[str]:
    """The `pretriever` command line of one setting (the bare command when the setting is empty)."""
    cmd = [sys.executable, "-m", "pretriever", *trainer.command, "--dataset", dataset, "--out", str(out),
           "--quiet"]
    if base != "minilm":
        cmd += ["--model", base]
    for key, value in setting.items():
        if key != "name":
            cmd += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return cmd


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; (wall seconds, its peak resident memory in GB of 1e9 bytes, its last output)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read()[-2000:]
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {child.returncode}:\n{tail}")
    peak_kib = usage.ru_maxrss  # kilobytes on Linux
    return time.perf_counter() - start, peak_kib * 1024 / 1e9, tail.strip().splitlines()[-1] if tail else ""


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    from pretriever.data.dataset import load_dataset

    settings = json.loads(Path(args.settings).read_text(encoding="utf-8"))
    names = [s.get("name") for s in settings]
    if None in names or len(set(names)) != len(names) or "start" in names:
        raise SystemExit(f"{args.settings}: every setting needs a unique name, other than 'start'")
    trainer = trainers()[args.trainer]
    work = Path(args.work or tempfile.mkdtemp(prefix="sweep-"))
    results: dict[str, Any] = {"trainer": args.trainer, "command": " ".join(trainer.command),
                               "settings": settings, "settings_file": args.settings,
                               "base": args.base, "machine": machine_line(LIBS),
                               "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "datasets": {}}
    datasets = {}
    for name in args.datasets.split(","):
        datasets[name] = dataset = load_dataset(name)
        selection = selection_split(dataset)
        if args.trainer != "pretrain" and selection == "train":
            raise SystemExit(f"{name} has no dev split: {args.trainer} trains on its train queries, so a "
                             "setting could only be chosen on the queries it trained on; use a dataset "
                             "with a dev split (nfcorpus)")
        results["datasets"][name] = {"selection": selection,
                                     "runs": {"start": scores(dataset, args.base, [selection, "test"])}}
    for setting in settings:  # every dataset before the next setting: a cut-short sweep stays paired
        for name, dataset in datasets.items():
            entry = results["datasets"][name]
            out = work / f"{name}-{setting['name']}"
            cmd = command(trainer, name, out, args.base, setting)
            seconds, peak_gb, said = run_child(cmd)
            run = scores(dataset, str(out), [entry["selection"], "test"])
            entry["runs"][setting["name"]] = {**run, "seconds": seconds, "peak_gb": peak_gb, "said": said,
                                              "command": " ".join(["pretriever", *cmd[3:]])}
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
            print(_line(name, setting["name"], entry), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results), encoding="utf-8")
    return results


def _delta(entry: dict[str, Any], run: str, split: str, metric: str = "nDCG@10") -> float:
    return entry["runs"][run][split]["metrics"][metric] - entry["runs"]["start"][split]["metrics"][metric]


def _line(dataset: str, run: str, entry: dict[str, Any]) -> str:
    got = entry["runs"][run]
    return (f"{dataset} {run}: {entry['selection']} {_delta(entry, run, entry['selection']):+.4f}, test "
            f"{_delta(entry, run, 'test'):+.4f} nDCG@10; {got['seconds'] / 60:.1f} min, "
            f"peak {got['peak_gb']:.1f} GB")


def section(results: dict[str, Any], title: str) -> str:
    from pretriever.evaluation.significance import randomization_test

    datasets = results["datasets"]
    names = [s["name"] for s in results["settings"]]
    chosen = max(names, key=lambda run: min(_delta(e, run, e["selection"]) for e in datasets.values()))
    lines = [f"## {title} ({results['started']})", "", results["machine"],
             f"- Settings (`{results['settings_file']}`), each run as a child process, "
             f"`pretriever {results['command']} --dataset D --out M --quiet` plus: " + "; ".join(
                 f"**{s['name']}** " + (" ".join(f"`--set {k}={v}`" for k, v in s.items() if k != "name")
                                        or "(nothing: the defaults)") for s in results["settings"]),
             f"- Scored: dense retrieval with each model (exact search, torch fp32, top 100) against the "
             f"start ({results['base']}); p: paired randomization test on test nDCG@10, seed 42. Peak: the "
             "child's maximum resident memory (GB of 1e9 bytes).",
             f"- Chosen on the selection splits, without test: **{chosen}**", "",
             "| dataset | setting | selection Δ nDCG@10 | test nDCG@10 | Δ | p | test R@100 | Δ | minutes | "
             "peak GB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, entry in datasets.items():
        start = entry["runs"]["start"]
        lines.append(f"| {name} | start ({results['base']}) | ({entry['selection']} "
                     f"{start[entry['selection']]['metrics']['nDCG@10']:.4f}) | "
                     f"{start['test']['metrics']['nDCG@10']:.4f} | | | "
                     f"{start['test']['metrics']['Recall@100']:.4f} | | | |")
        qids = sorted(start["test"]["per_query"])
        for run in names:
            got = entry["runs"].get(run)
            if got is None:
                continue
            p = randomization_test([got["test"]["per_query"][q]["nDCG@10"] for q in qids],
                                   [start["test"]["per_query"][q]["nDCG@10"] for q in qids])
            mark = "**" if run == chosen else ""
            lines.append(
                f"| {name} | {mark}{run}{mark} | {_delta(entry, run, entry['selection']):+.4f} | "
                f"{got['test']['metrics']['nDCG@10']:.4f} | {_delta(entry, run, 'test'):+.4f} | {p:.3f} | "
                f"{got['test']['metrics']['Recall@100']:.4f} | "
                f"{_delta(entry, run, 'test', 'Recall@100'):+.4f} | {got['seconds'] / 60:.1f} | "
                f"{got['peak_gb']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", required=True, help="JSON file: a list of settings (see above)")
    parser.add_argument("--trainer", default="pretrain", choices=sorted(trainers()))
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--base", default="minilm", help="the model every setting starts from")
    parser.add_argument("--title", help="the RESULTS.md section's heading (default: Sweep of SETTINGS)")
    parser.add_argument("--work", help="folder for the models (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep every model in --work")
    parser.add_argument("--json", help="write every score, per query too, to this file")
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashed child leaves no core file in the repo
    text = section(sweep(args), args.title or f"Sweep of `{args.settings}`")
    print(text)
    if not args.no_append:
        record_section(text)


if __name__ == "__main__":
    main()
