"""``pretriever rerank`` and ``pretriever score``: a cross-encoder over an existing run file."""

from __future__ import annotations

import argparse

from pretriever.cli._common import add_backend_args, add_dataset_args, show_progress

RERANK_DESCRIPTION = """\
Rerank the top --depth documents of each query of a TREC run file with a cross-encoder and
write the reranked run. Documents below --depth keep their order below the reranked ones, so
the set of documents never changes. Query and document texts come from --dataset."""

SCORE_DESCRIPTION = """\
Score every (query, document) pair of a TREC run file (or its top --depth per query) with a
cross-encoder and write the raw logits as a TREC run: teacher scores for margin-MSE
distillation (`pretriever train --teacher FILE`)."""


def register(commands: argparse._SubParsersAction) -> None:
    rerank = commands.add_parser(
        "rerank", help="rerank a run file with a cross-encoder", description=RERANK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever evaluate -d scifact -r hybrid --save-run hybrid.trec\n"
        "  pretriever rerank -d scifact --run hybrid.trec --model models/sf-reranker --out reranked.trec\n"
        "  pretriever evaluate -d scifact -r hybrid.trec -r reranked.trec",
    )
    _common(rerank)
    rerank.add_argument("--depth", type=int, default=100, help="documents reranked per query (default 100)")
    rerank.add_argument("--interpolation", type=float,
                        help="weight of the reranker's min-max scores against the run's (default: the "
                        "reranker's own, tuned on held-out queries when it was trained; 1.0 = alone)")
    rerank.set_defaults(handler=run_rerank)

    score = commands.add_parser(
        "score", help="write cross-encoder scores for a run (teacher scores)",
        description=SCORE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever evaluate -d scifact -r bm25 --split train --save-run bm25-train.trec\n"
        "  pretriever score -d scifact --run bm25-train.trec --model models/sf-reranker --depth 30 "
        "--out teacher.trec",
    )
    _common(score)
    score.add_argument("--depth", type=int, help="score only the top DEPTH of each query (default all)")
    score.set_defaults(handler=run_score)


def _common(parser: argparse.ArgumentParser) -> None:
    add_dataset_args(parser)
    parser.add_argument("--run", required=True, metavar="FILE", help="TREC run file (first stage)")
    parser.add_argument("--model", "-m", required=True, metavar="DIR",
                        help="cross-encoder folder (from `pretriever train-reranker`)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE", help="TREC run file to write")
    parser.add_argument("--batch-size", type=int, help="pairs per batch (default: the model's, else 32)")
    add_backend_args(parser)


def _inputs(args: argparse.Namespace):  # -> (run, name, queries, texts, reranker)
    from pretriever.data.dataset import load_dataset
    from pretriever.encoders.cross import Reranker
    from pretriever.errors import ConfigError
    from pretriever.runs import read_run

    if args.depth is not None and args.depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {args.depth}")
    dataset = load_dataset(args.dataset, lenient=args.lenient)
    run, name = read_run(args.run)
    reranker = Reranker.load(args.model, backend=args.backend, precision=args.precision,
                             batch_size=args.batch_size)
    return run, name, dataset.queries, dataset.corpus.text_map(), reranker


def run_rerank(args: argparse.Namespace) -> int:
    from pretriever.runs import write_run

    run, name, queries, texts, reranker = _inputs(args)
    out = reranker.rerank(run, queries, texts, depth=args.depth, interpolation=args.interpolation,
                          progress=show_progress())
    write_run(args.out, out, name=f"{name or 'run'}+rerank")
    print(f"reranked the top {args.depth} of {len(run)} queries with {args.model} "
          f"({'/'.join(reranker.resolved)}) -> {args.out}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from pretriever.runs import write_run

    run, _, queries, texts, reranker = _inputs(args)
    scores = reranker.score_run(run, queries, texts, depth=args.depth, progress=show_progress())
    write_run(args.out, scores, name="teacher")
    pairs = sum(len(v) for v in scores.values())
    print(f"scored {pairs:,} pairs of {len(scores)} queries with {args.model} -> {args.out}")
    return 0
