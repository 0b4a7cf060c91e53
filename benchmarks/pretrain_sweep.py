"""Zero-label pre-training sweep in one process: many settings, each scored on a selection split and on test.

benchmarks/pretrain.py runs one `pretriever` command per step, which suits a CPU; on a GPU the
imports and the CUDA start would cost more than the training, so this script keeps one process.
A settings file lists the settings to run (PretrainConfig fields, dotted `loop.*` keys too):

    [{"name": "lexical-w3", "tasks": "lexical", "lexical_weight": 3, "max_examples": 2048}, ...]

Two keys are the sweep's own: "soup_of": [NAME, ...] averages settings run before (trains nothing),
and "after": NAME starts a setting from an earlier setting's model on the same corpus, so that a
second round of `lexical` learns from that student plus BM25 (iterated distillation).

Every setting is pre-trained on each dataset's corpus alone, then searched on the selection split
(`--selection`, default: dev where the dataset has one, else train) and on test, against the
off-the-shelf model. The setting to report is the one whose smaller gain over the off-the-shelf
model on the datasets' selection splits is the largest: chosen without looking at test. Test
nDCG@10 and Recall@100 are reported for every setting, with a paired randomization test, and the
per-query scores are written to --json for later tests.

    python benchmarks/pretrain_sweep.py --settings benchmarks/sweeps/lexical-idf.json --json sweep.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import append_results, machine_line, selection_split, split_evaluations

LIBS = ("torch", "sentence-transformers", "transformers")
METRICS = ["nDCG@10", "Recall@100"]


def scores(dataset: Any, model: str, splits: list[str], device: str) -> dict[str, Any]:
    """Per-query nDCG@10 / Recall@100 of ``model`` on each split (one corpus encoding, fp32)."""
    from pretriever.encoders.dense import DenseEncoder

    encoder = DenseEncoder(model, backend="torch", precision="float32", device=device)
    return {split: {"metrics": result.metrics, "per_query": result.per_query}
            for split, result in zip(splits, split_evaluations(dataset, encoder, splits, METRICS))}


def run_setting(setting: dict[str, Any], dataset: str, base: str, work: Path, device: str,
                ) -> tuple[str, dict[str, Any]]:
    """Pre-train one setting on ``dataset`` (or soup earlier ones); (model folder, what was measured)."""
    from pretriever.training.config import build_config
    from pretriever.training.pretrain.trainer import PretrainConfig, pretrain
    from pretriever.training.soups import soup

    out = work / f"{dataset}-{setting['name']}"
    if "soup_of" in setting:  # a uniform soup of settings run before, on the same corpus
        start = time.perf_counter()
        soup([work / f"{dataset}-{name}" for name in setting["soup_of"]], out, overwrite=True)
        return str(out), {"seconds": time.perf_counter() - start}
    if "after" in setting:  # a later round: start from (and, for lexical, be taught by) that student
        base = str(work / f"{dataset}-{setting['after']}")
    fields = {k: v for k, v in setting.items() if k not in ("name", "after")}
    config = build_config(PretrainConfig, None, dataset=dataset, out=str(out), base=base, device=device,
                          **fields)
    report = pretrain(config, progress=False, overwrite=True)
    return str(out), {"examples": report.examples, "steps": report.loop.steps,
                      "seconds": report.loop.seconds, "examples_per_second": report.loop.examples_per_second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", help="JSON file: a list of settings (see above)")
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--selection", default=None, help="split that picks the setting (default: dev, "
                        "else train)")
    parser.add_argument("--base", default="minilm", help="model every setting starts from")
    parser.add_argument("--device", default=None, help="torch device (default: cuda where there is one)")
    parser.add_argument("--work", default=None, help="folder for the models (default: a temporary one; "
                        "each is deleted once scored, unless a later soup needs it or --keep)")
    parser.add_argument("--keep", action="store_true", help="keep every model in --work (to mix one with "
                        "the base later, say: benchmarks/wise_ft.py)")
    parser.add_argument("--json", default=None, help="write every score, per query too, to this file "
                        "(rewritten after each setting)")
    parser.add_argument("--render", metavar="JSON", help="only write the section of an earlier run's --json "
                        "(one cut short, say)")
    parser.add_argument("--only", default=None, metavar="NAME[,NAME]",
                        help="run only these settings of the file (a soup needs its ingredients among "
                        "them, an 'after' setting its start)")
    parser.add_argument("--section", default=None, help="also write the markdown section to this file")
    parser.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if args.render:
        results = json.loads(Path(args.render).read_text(encoding="utf-8"))
    elif args.settings:
        results = sweep(args)
    else:
        parser.error("give --settings (run a sweep) or --render (write an earlier run's section)")
    section = _section(results)
    print(section)
    if args.section:
        Path(args.section).write_text(section, encoding="utf-8")
    if not args.no_append:
        append_results(section)


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    from pretriever._io import write_json
    from pretriever.data.dataset import load_dataset
    from pretriever.encoders.backends import torch_device

    settings = json.loads(Path(args.settings).read_text(encoding="utf-8"))
    names = [s["name"] for s in settings]
    if len(set(names)) != len(names) or "off-the-shelf" in names:
        raise SystemExit(f"{args.settings}: setting names must be unique, and not off-the-shelf")
    if args.only:
        wanted = args.only.split(",")
        if missing := sorted(set(wanted) - set(names)):
            raise SystemExit(f"--only: no setting {', '.join(missing)} in {args.settings}")
        settings = [s for s in settings if s["name"] in wanted]
    kept = {name for s in settings for name in (*s.get("soup_of", ()), s.get("after")) if name}
    device = torch_device(args.device)
    work = Path(args.work or tempfile.mkdtemp(prefix="sweep-"))
    results: dict[str, Any] = {"settings": settings, "settings_file": args.settings,
                               "device": _device_name(device), "machine": machine_line(LIBS),
                               "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "datasets": {}}

    def save() -> None:  # after every run, so a sweep cut short still leaves what it measured
        if args.json:
            write_json(args.json, results)

    datasets = {}
    for name in args.datasets.split(","):
        datasets[name] = dataset = load_dataset(name)
        selection = args.selection or selection_split(dataset)
        entry = results["datasets"][name] = {"selection": selection, "runs": {}}
        entry["runs"]["off-the-shelf"] = scores(dataset, args.base, [selection, "test"], device)
        save()
    for setting in settings:  # every dataset before the next setting: a cut-short sweep stays paired
        for name, dataset in datasets.items():
            entry = results["datasets"][name]
            start = time.perf_counter()
            try:
                folder, loop = run_setting(setting, name, args.base, work, device)
                run = scores(dataset, folder, [entry["selection"], "test"], device)
                if setting["name"] not in kept and not args.keep:
                    shutil.rmtree(folder, ignore_errors=True)
            except Exception:  # one broken setting must not cost the others
                traceback.print_exc()
                run, loop = {"error": traceback.format_exc(limit=3)}, {}
            seconds = time.perf_counter() - start
            entry["runs"][setting["name"]] = {**run, "loop": loop, "wall_seconds": seconds}
            print(_line(name, setting["name"], entry), flush=True)
            save()
    return results


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"CPU (torch {torch.__version__})"


def _delta(entry: dict[str, Any], run: str, split: str, metric: str = "nDCG@10") -> float | None:
    got = entry["runs"][run]
    if "error" in got:
        return None
    return got[split]["metrics"][metric] - entry["runs"]["off-the-shelf"][split]["metrics"][metric]


def _speed(loop: dict[str, Any]) -> str:
    """Training examples per second (blank for a soup, which trains nothing)."""
    return f"{loop['examples_per_second']:.1f}" if "examples_per_second" in loop else ""


def _line(dataset: str, run: str, entry: dict[str, Any]) -> str:
    got = entry["runs"][run]
    if "error" in got:
        return f"{dataset} {run}: FAILED ({got['error'].strip().splitlines()[-1]})"
    sel, test = _delta(entry, run, entry["selection"]), _delta(entry, run, "test")
    return (f"{dataset} {run}: {entry['selection']} {sel:+.4f}, test {test:+.4f} nDCG@10; "
            f"{_speed(got['loop']) or '-'} examples/s, {got['wall_seconds']:.0f} s in all")


def _section(results: dict[str, Any]) -> str:
    from pretriever.evaluation.significance import randomization_test

    datasets = results["datasets"]
    names = [s["name"] for s in results["settings"]]

    def worst_selection_gain(run: str) -> float:  # -inf unless the setting ran on every dataset
        if any(run not in entry["runs"] for entry in datasets.values()):
            return float("-inf")
        gains = [_delta(entry, run, entry["selection"]) for entry in datasets.values()]
        return float("-inf") if None in gains else min(gains)  # type: ignore[type-var]

    chosen = max(names, key=worst_selection_gain) if names else None
    lines = [f"## Zero-label pre-training sweep ({results['started']})", "",
             f"- Device: {results['device']}", results["machine"],
             f"- Settings file `{results['settings_file']}`: " + "; ".join(
                 f"**{s['name']}** `" + json.dumps({k: v for k, v in s.items() if k != "name"}) + "`"
                 for s in results["settings"]),
             f"- Chosen on the selection splits, without test: **{chosen}** (the largest smaller gain over "
             "the off-the-shelf model across datasets)", "",
             "| dataset | setting | selection Δ nDCG@10 | test nDCG@10 | Δ | p | test R@100 | Δ | "
             "examples/s | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in datasets.items():
        base = entry["runs"]["off-the-shelf"]
        lines.append(f"| {name} | off-the-shelf | ({entry['selection']} "
                     f"{base[entry['selection']]['metrics']['nDCG@10']:.4f}) | "
                     f"{base['test']['metrics']['nDCG@10']:.4f} | | | "
                     f"{base['test']['metrics']['Recall@100']:.4f} | | | |")
        for run in names:
            got = entry["runs"].get(run)
            if got is None:
                continue
            if "error" in got:
                lines.append(f"| {name} | {run} | failed | | | | | | | |")
                continue
            qids = sorted(base["test"]["per_query"])
            p = randomization_test([got["test"]["per_query"][q]["nDCG@10"] for q in qids],
                                   [base["test"]["per_query"][q]["nDCG@10"] for q in qids])
            mark = "**" if run == chosen else ""
            lines.append(
                f"| {name} | {mark}{run}{mark} | {_delta(entry, run, entry['selection']):+.4f} | "
                f"{got['test']['metrics']['nDCG@10']:.4f} | {_delta(entry, run, 'test'):+.4f} | {p:.3f} | "
                f"{got['test']['metrics']['Recall@100']:.4f} | "
                f"{_delta(entry, run, 'test', 'Recall@100'):+.4f} | "
                f"{_speed(got['loop'])} | {got['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
