"""``pretriever build --dataset D --out DIR``: the best retriever measured for a corpus, in one command."""

from __future__ import annotations

import argparse
import time

from pretriever.cli._common import (
    add_backend_args,
    add_dataset_args,
    add_model_arg,
    add_output_args,
    add_quiet_arg,
    info,
    show_progress,
)

DESCRIPTION = """\
Turn a corpus into the best retriever this project has measured for it, and save it as one
pipeline folder (search it, evaluate it, serve it).

Without labels: BM25 + the dense model + zero-shot late interaction (MaxSim over the model's own
token vectors, PLAID-compressed), fused by the measured label-free rule. With --train-split:
that pipeline is the first candidate, then the dense model is fine-tuned and mixed with its start
(WiSE-FT), then the fusion weights are tuned, then --reranker is tried; each stage is kept only
if it beats the previous pipeline on dev (--dev-split, the dataset's dev split, or 10% of the
training queries held out). The test split is never read for a choice: if there is one, the
report ends with the built pipeline against the off-the-shelf hybrid, with a significance test.

DIR holds the pipeline, report.md, build.json (every choice and number) and chart.png (dev
scores, or test scores without labels; none without either). A killed build resumes when the
same command is run again (stages are kept in DIR.work); --overwrite replaces DIR, and starts
over only if DIR.work holds a build with other settings."""

EPILOG = """\
examples:
  pretriever build --dataset scifact --out pipelines/scifact                     # no labels
  pretriever build --dataset scifact --train-split train --out pipelines/sf-ft   # fine-tunes
  pretriever build --dataset nfcorpus --train-split train --budget-minutes 30 --out pipelines/nf
  pretriever evaluate --dataset scifact --retriever pipelines/scifact
  pretriever search --index pipelines/scifact "do statins reduce mortality?" -k 5
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "build",
        help="corpus in, the best measured retriever out (one pipeline folder + report)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(parser)
    add_output_args(parser, "pipeline folder to create (with report.md and build.json)")
    add_model_arg(parser, "the encoder every neural stage starts from (default minilm)")
    parser.add_argument(
        "--train-split",
        metavar="SPLIT",
        help="labelled split to fine-tune on (e.g. train); without it nothing is trained",
    )
    parser.add_argument(
        "--dev-split",
        metavar="SPLIT",
        help="split every choice is made on (default: the dataset's dev split, else 10%% of "
        "the training queries, held out from training)",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        metavar="N",
        help="fit the whole labelled build into about N minutes of this machine by scaling the "
        "fine-tuning (default 60; needs --train-split); the plan is printed before anything runs",
    )
    parser.add_argument(
        "--reranker",
        metavar="DIR",
        help="a cross-encoder folder to try as the last stage (kept only if it wins on dev)",
    )
    parser.add_argument(
        "--no-colbert",
        dest="colbert",
        action="store_false",
        help="leave out the late-interaction member (less disk and build time)",
    )
    parser.add_argument(
        "--bm25-prf",
        metavar="METHOD",
        default=None,
        help="BM25's pseudo-relevance feedback (default rm3:max_query_terms=3, the measured best: "
        "RM3 on queries of at most 3 terms; plain rm3 expands every query, measured to hurt long "
        "ones), or none",
    )
    parser.add_argument(
        "--dense-prf",
        metavar="METHOD",
        default=None,
        help="the dense member's feedback: rocchio, rocchio:fb_docs=3,beta=0.5, or none (default "
        "none: Rocchio was measured not to lift the pipeline)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of the dev carve-out, the fine-tuning and the significance test",
    )
    add_backend_args(parser)
    add_quiet_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.recipe import BuildConfig, build

    options = {"bm25_feedback": args.bm25_prf, "dense_feedback": args.dense_prf}
    config = BuildConfig(
        dataset=args.dataset,
        out=args.out,
        model=args.model,
        train_split=args.train_split,
        dev_split=args.dev_split,
        budget_minutes=args.budget_minutes,
        reranker=args.reranker,
        colbert=args.colbert,
        seed=args.seed,
        lenient=bool(args.lenient),
        backend=args.backend,
        precision=args.precision,
        **{k: v for k, v in options.items() if v is not None},
    )
    start = time.perf_counter()
    result = build(config, overwrite=args.overwrite, progress=show_progress(args), log=info)
    for stage in result.stages:
        score = f"dev {stage.dev:.4f}" if stage.dev is not None else ""
        flag = "kept" if stage.kept else "DROPPED"
        print(f"{stage.name:<16} {flag:<8} {score:<12} {stage.seconds:>6.0f} s  {stage.reason}")
    test = result.test or {}
    if test.get("runs"):
        for name, metrics in test["runs"].items():
            print(f"test {name:<28} nDCG@10 {metrics['nDCG@10']:.4f}")
    print(f"wrote {result.folder} ({time.perf_counter() - start:.0f} s): report.md, build.json")
    return 0
