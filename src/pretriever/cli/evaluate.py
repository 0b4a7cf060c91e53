"""``pretriever evaluate``: score one or more retrievers on a dataset split, with significance."""

from __future__ import annotations

import argparse
from pathlib import Path

from pretriever.cli._common import (
    add_backend_args,
    add_dataset_args,
    add_depth_arg,
    add_model_arg,
    add_quiet_arg,
    dataset_from,
    print_json,
    show_progress,
    warn,
)

DESCRIPTION = """\
Run each --retriever on the judged queries of --split and score it against the qrels.
A retriever is 'bm25', 'dense', 'colbert' or 'hybrid' (built on the fly over the corpus;
colbert = late interaction over the model's token vectors, zero-shot for a plain encoder;
hybrid = BM25 + dense, min-max weighted sum; join members with '+' to fuse them, e.g.
hybrid+colbert), an index or pipeline folder, or a TREC run file. Give
--retriever several times to compare systems: the first is the baseline, and a paired,
seeded significance test marks differences with '*'. Judged queries that a run does not
answer score 0 and are reported. With --reranker, each retriever's top --depth is also
reranked by that cross-encoder or late-interaction index (an extra row per retriever). A
run saved with --save-run scores the same in trec_eval (ties are ranked as trec_eval ranks
them, scores at full precision)."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="evaluate retrievers on a dataset", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever evaluate --dataset scifact --retriever bm25\n"
        "  pretriever evaluate --dataset nfcorpus --retriever bm25 --retriever my.run --json\n"
        "  pretriever evaluate -d scifact --retriever indexes/scifact-bm25 --save-run bm25.trec\n"
        "  pretriever evaluate -d scifact --retriever hybrid --reranker models/sf-reranker --depth 30\n"
        "  pretriever evaluate -d scifact --retriever hybrid --retriever hybrid+colbert",
    )
    add_dataset_args(parser)
    parser.add_argument("--retriever", "-r", action="append", required=True, metavar="R",
                        help="bm25 | dense | colbert | hybrid | hybrid+colbert | INDEX_DIR | RUN_FILE "
                        "(repeatable; the first is the baseline)")
    add_model_arg(parser, "model of the dense and hybrid retrievers: a sentence-transformers folder or "
                  "'minilm' (default)")
    add_backend_args(parser)
    parser.add_argument("--reranker", metavar="DIR",
                        help="also rerank each retriever's top --depth with this cross-encoder or "
                        "late-interaction index folder (an extra row per retriever, compared with "
                        "significance)")
    add_depth_arg(parser, "how many the --reranker reorders (default 100)", default=100)
    parser.add_argument("--split", default="test", help="qrels split to evaluate on (default test)")
    parser.add_argument("--metrics", nargs="+", metavar="M",
                        default=["nDCG@10", "Recall@100", "MRR@10", "MAP@100", "P@10"],
                        help="metric names (default: nDCG@10 Recall@100 MRR@10 MAP@100 P@10)")
    parser.add_argument("-k", type=int, default=100, help="results per query (default 100)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object; its 'metrics' key maps names to values")
    parser.add_argument("--per-query", action="store_true", help="include per-query scores (JSON)")
    parser.add_argument("--save-run", metavar="FILE", help="write the run as a TREC file")
    parser.add_argument("--test", default="randomization", choices=["randomization", "t-test"],
                        help="paired significance test (default randomization)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the randomization test")
    add_quiet_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.errors import ConfigError
    from pretriever.evaluation import compare, evaluate, format_table, parse_metric, to_json
    from pretriever.retrieval import retrieve
    from pretriever.retrieval.loading import check_reranker
    from pretriever.runs import write_run

    for metric in args.metrics:
        parse_metric(metric)  # fail on a typo before any work
    if not Path(args.model).exists() and _is_metric(args.model):
        raise ConfigError(f"--model {args.model} looks like a metric: -m is --model on every command; "
                          f"give metrics with --metrics {args.model}")
    if args.save_run and (len(args.retriever) > 1 or args.reranker):
        raise ConfigError("--save-run takes a single --retriever and no --reranker")
    if args.depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {args.depth}")
    if args.k < 1:
        raise ConfigError(f"-k must be at least 1, got {args.k}")
    dataset = dataset_from(args)
    qrels = dataset.qrels(args.split)
    reranker = None
    if args.reranker:
        from pretriever.retrieval.loading import load_reranker

        reranker = load_reranker(args.reranker, backend=args.backend, precision=args.precision)
        check_reranker(reranker, dataset, args.reranker)
    evaluations = []
    for spec in args.retriever:
        run, name, notes = retrieve(dataset, spec, split=args.split, k=args.k, progress=show_progress(args),
                                    model=args.model, backend=args.backend, precision=args.precision)
        if args.save_run:
            write_run(args.save_run, run, name=name.replace(" ", "_"))
        evaluations.append(evaluate(qrels, run, args.metrics, name=name, notes=notes))
        if reranker is not None:
            queries = dataset.split_queries(args.split)
            reranked = reranker.rerank(run, queries, dataset.corpus.text_map(), depth=args.depth,
                                       progress=show_progress(args))
            how = (f"reranked top {args.depth} with {args.reranker} ({'/'.join(reranker.resolved)}; "
                   f"{reranker.describe_mix(args.depth)})")
            evaluations.append(evaluate(qrels, reranked, args.metrics, name=f"{name} > rerank",
                                        notes=[*notes, how, *getattr(reranker, "notes", [])]))
    comparisons = []
    if len(evaluations) > 1:
        comparisons = compare(evaluations, args.metrics[0], test=args.test, seed=args.seed)
    for message in dataset.warnings:
        warn(message)
    if args.json:
        print_json(to_json(evaluations, comparisons, per_query=args.per_query,
                           dataset=dataset.name, split=args.split))
    else:
        print(f"{dataset.name} / {args.split}: {len(qrels)} judged queries")
        print(format_table(evaluations, comparisons))
    return 0


def _is_metric(text: str) -> bool:
    from pretriever.errors import ConfigError
    from pretriever.evaluation import parse_metric

    try:
        parse_metric(text)
    except ConfigError:
        return False
    return True
