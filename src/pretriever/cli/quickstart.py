"""``pretriever quickstart --dataset D``: BM25 vs dense vs hybrid, with a report folder."""

from __future__ import annotations

import argparse
import time

from pretriever._io import fresh_output, work_folder
from pretriever.cli._common import (
    add_backend_args,
    add_dataset_args,
    add_model_arg,
    add_output_args,
    add_quiet_arg,
    dataset_from,
    show_progress,
    warn,
)

DESCRIPTION = """\
Build BM25, a dense retriever and their hybrids over the dataset's corpus, evaluate all of
them on --split, and print a leaderboard where '*' marks a significant difference to BM25
(paired randomization test, seeded). A report folder (report.md, chart.png, results.json,
runs/*.trec) is written to --out."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "quickstart", help="BM25 vs dense vs hybrid on a dataset, with a report",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  pretriever quickstart --dataset scifact --out reports/scifact",
    )
    add_dataset_args(parser)
    add_model_arg(parser, "dense model: a sentence-transformers folder or 'minilm' (default)")
    add_backend_args(parser)
    parser.add_argument("--split", default="test", help="qrels split to evaluate on (default test)")
    add_output_args(parser, "report folder (default reports/<dataset>-<split>)", required=False)
    parser.add_argument("--seed", type=int, default=42, help="seed of the significance test")
    add_quiet_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever._quickstart import quickstart

    dataset = dataset_from(args)
    out = fresh_output(args.out or f"reports/{dataset.name}-{args.split}", args.overwrite)
    work = work_folder(out)
    start = time.perf_counter()
    result = quickstart(dataset, model=args.model, split=args.split, out=out, overwrite=args.overwrite,
                        seed=args.seed, progress=show_progress(args), work_dir=work, backend=args.backend,
                        precision=args.precision)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    for message in dataset.warnings:
        warn(message)
    print(f"{dataset.name} / {args.split}: {len(dataset.qrels(args.split))} judged queries, "
          f"{len(dataset.corpus):,} documents")
    print(result.table())
    print(f"report: {out}/report.md  (wall time {time.perf_counter() - start:.0f}s)")
    return 0
