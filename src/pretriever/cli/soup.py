"""``pretriever soup``: average fine-tuned models' weights (uniform or greedy model soup)."""

from __future__ import annotations

import argparse

from pretriever.cli._common import (
    add_dataset_args,
    add_output_args,
    add_quiet_arg,
    dataset_from,
    show_progress,
)

DESCRIPTION = """\
Average the weights of models fine-tuned from the same base (Wortsman et al. 2022). Uniform:
the mean of all; --weights: a weighted mean (a fine-tuned model and its base, e.g. --weights
0.5,0.5, is WiSE-FT: it often beats both out of domain, and undoes a fine-tuning that hurt).
--greedy: models sorted by nDCG@10 on --split of --dataset (dense retrieval over its corpus),
each added only if the soup's score does not drop. Models must share pooling, prompts and max
length; the soup is a plain sentence-transformers folder."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "soup", help="average fine-tuned models (model soup)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever soup -m models/run-a -m models/run-b --out models/soup\n"
        "  pretriever soup -m minilm -m models/nf-dense --weights 0.5,0.5 --out models/nf-wise\n"
        "  pretriever soup -m models/run-a -m models/run-b -m models/run-c --greedy --dataset nfcorpus "
        "--out models/greedy",
    )
    parser.add_argument("--model", "-m", action="append", required=True, dest="models", metavar="MODEL",
                        help="a model folder (or 'minilm'); give it once per model, at least twice")
    add_output_args(parser, "model folder to create")
    parser.add_argument("--greedy", action="store_true", help="greedy soup by a dev metric")
    parser.add_argument("--weights", metavar="W,W,...",
                        help="one weight per model, comma-separated (normalised to sum 1)")
    add_dataset_args(parser, required=False)
    parser.add_argument("--split", default="dev", help="split for the greedy choice (default dev)")
    add_quiet_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever._io import fresh_output
    from pretriever.errors import ConfigError
    from pretriever.training.soups import dev_scorer, soup

    fresh_output(args.out, args.overwrite)
    score = None
    if args.greedy:
        if not args.dataset:
            raise ConfigError("--greedy needs --dataset (and --split, default dev) to score models")

        dataset = dataset_from(args)
        score = dev_scorer(dataset, args.split, progress=show_progress(args))
    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights takes numbers separated by commas, got '{args.weights}'") from None
    report = soup(args.models, args.out, greedy=args.greedy, weights=weights, score=score,
                  overwrite=args.overwrite)
    detail = f" (dev nDCG@10 {report.soup_score:.4f})" if report.soup_score is not None else ""
    print(f"soup of {len(report.ingredients)} models{detail}: {', '.join(report.ingredients)} -> "
          f"{report.folder}")
    return 0
