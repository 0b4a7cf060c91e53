"""``pretriever data check DATASET``: validate every file of a dataset and print statistics."""

from __future__ import annotations

import argparse

from pretriever.cli._common import (
    add_dataset_args,
    add_quiet_arg,
    dataset_from,
    print_json,
    warn,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("data", help="inspect and validate datasets")
    sub = parser.add_subparsers(title="data commands", metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="validate a dataset and print its statistics",
        description="Read the corpus, queries and every qrels split, reporting the first problem "
        "with its file and line; on success print counts (documents, empty documents, queries, "
        "judgements per split).",
    )
    check.add_argument("name", nargs="?", metavar="DATASET", help="the same as --dataset")
    add_dataset_args(check, required=False)
    check.add_argument("--json", action="store_true", help="print the statistics as JSON")
    add_quiet_arg(check)
    check.set_defaults(handler=run_check)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_check(args: argparse.Namespace) -> int:
    from pretriever.errors import ConfigError

    name = args.dataset or args.name
    if not name or (args.dataset and args.name and args.dataset != args.name):
        raise ConfigError("give one dataset: pretriever data check --dataset DATASET")
    dataset = dataset_from(args, name)
    stats = dataset.stats()
    if args.json:
        print_json(stats)
    else:
        print(f"dataset      {stats['name']}  ({stats['path']})")
        print(f"documents    {stats['documents']:,}  (empty: {stats['empty_documents']}, "
              f"with title: {stats['documents_with_title']:,}, mean words: "
              f"{stats['mean_words_per_document']}, max: {stats['max_words_per_document']:,})")
        if "queries" in stats:
            print(f"queries      {stats['queries']:,}  (empty: {stats['empty_queries']})")
        for split, s in stats["splits"].items():
            grades = ", ".join(f"{g}: {n:,}" for g, n in s["grades"].items())
            print(f"qrels/{split:<6} {s['queries']:,} queries, {s['judgements']:,} judgements "
                  f"({s['relevant']:,} relevant; grades {grades})")
        print("ok: every file is valid")
    for message in stats["warnings"]:
        warn(message)
    return 0
