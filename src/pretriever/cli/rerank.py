"""``pretriever rerank`` and ``pretriever score``: a cross-encoder over a first stage's candidates."""

from __future__ import annotations

import argparse

from pretriever._io import fresh_output
from pretriever.cli._common import (
    add_backend_args,
    add_dataset_args,
    add_depth_arg,
    add_first_stage_arg,
    add_model_arg,
    add_output_args,
    add_quiet_arg,
    dataset_from,
    show_progress,
)

RERANK_DESCRIPTION = """\
Rerank the top --depth documents of each query of a first stage with a cross-encoder and write
the reranked run as a TREC file. The first stage is a TREC run file (read as is), an index
folder or bm25 / dense / hybrid (searched for the judged queries of --split). Documents below
--depth keep their order below the reranked ones, so the set of documents never changes.
Query and document texts come from --dataset."""

SCORE_DESCRIPTION = """\
Score every (query, document) pair of a first stage (or its top --depth per query) with a
cross-encoder and write the raw logits as a TREC run: teacher scores for margin-MSE
distillation (`pretriever train --teacher FILE`)."""


def register(commands: argparse._SubParsersAction) -> None:
    rerank = commands.add_parser(
        "rerank", help="rerank a first stage with a cross-encoder", description=RERANK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever evaluate -d scifact --retriever hybrid --save-run hybrid.trec\n"
        "  pretriever rerank -d scifact --first-stage hybrid.trec --reranker models/sf-reranker "
        "--out reranked.trec\n"
        "  pretriever evaluate -d scifact --retriever hybrid.trec --retriever reranked.trec",
    )
    _common(rerank, split="test")
    add_depth_arg(rerank, "how many are reranked (default 100)", default=100)
    rerank.add_argument("--interpolation", type=float,
                        help="weight of the reranker's min-max scores against the first stage's (default: "
                        "the reranker's own, tuned on held-out queries when it was trained; 1.0 = alone)")
    rerank.set_defaults(handler=run_rerank)

    score = commands.add_parser(
        "score", help="write cross-encoder scores of a first stage (teacher scores)",
        description=SCORE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever evaluate -d scifact --retriever bm25 --split train --save-run bm25-train.trec\n"
        "  pretriever score -d scifact --first-stage bm25-train.trec --reranker models/sf-reranker "
        "--depth 30 --out teacher.trec",
    )
    _common(score, split="train")
    add_depth_arg(score, "how many are scored (default: all of a run file, 100 of a retriever)")
    score.set_defaults(handler=run_score)


def _common(parser: argparse.ArgumentParser, split: str) -> None:
    add_dataset_args(parser)
    add_first_stage_arg(parser, "the candidates to read", required=True)
    parser.add_argument("--reranker", required=True, metavar="DIR",
                        help="cross-encoder folder (from `pretriever train-reranker`), or a "
                        "late-interaction index folder (`pretriever index colbert`: MaxSim)")
    add_output_args(parser, "TREC run file to write")
    parser.add_argument("--split", default=split,
                        help=f"queries of a first stage built now: the judged queries of this split "
                        f"(default {split})")
    add_model_arg(parser, "dense model of a first stage built now (dense, hybrid; default minilm)")
    parser.add_argument("--batch-size", type=int, help="pairs per batch (default: the model's, else 32)")
    add_backend_args(parser)
    add_quiet_arg(parser)


def _inputs(args: argparse.Namespace, depth: int):  # -> (run, name, queries, texts, reranker)
    from pretriever.errors import ConfigError
    from pretriever.retrieval.loading import check_reranker, load_reranker
    from pretriever.retrieval.spec import retrieve

    if args.depth is not None and args.depth < 1:
        raise ConfigError(f"--depth must be at least 1, got {args.depth}")
    fresh_output(args.out, args.overwrite)
    dataset = dataset_from(args)
    reranker = load_reranker(args.reranker, backend=args.backend, precision=args.precision,
                             batch_size=args.batch_size)
    check_reranker(reranker, dataset, args.reranker)
    run, name, _ = retrieve(dataset, args.first_stage, split=args.split, k=depth, model=args.model,
                            progress=show_progress(args))
    return run, name, dataset.queries, dataset.corpus.text_map(), reranker


def run_rerank(args: argparse.Namespace) -> int:
    from pretriever.runs import write_run

    run, name, queries, texts, reranker = _inputs(args, args.depth)
    out = reranker.rerank(run, queries, texts, depth=args.depth, interpolation=args.interpolation,
                          progress=show_progress(args))
    write_run(args.out, out, name=f"{name or 'run'}+rerank".replace(" ", "_"))
    print(f"reranked the top {args.depth} of {len(run)} queries with {args.reranker} "
          f"({'/'.join(reranker.resolved)}) -> {args.out}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from pretriever.runs import write_run

    run, _, queries, texts, reranker = _inputs(args, args.depth or 100)
    scores = reranker.score_run(run, queries, texts, depth=args.depth, progress=show_progress(args))
    write_run(args.out, scores, name="teacher")
    pairs = sum(len(v) for v in scores.values())
    print(f"scored {pairs:,} pairs of {len(scores)} queries with {args.reranker} -> {args.out}")
    return 0
