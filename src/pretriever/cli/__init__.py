"""The ``pretriever`` command: a thin adapter over the Python API.

Each subcommand lives in its own module with ``register(subparsers)``; heavy libraries are
imported inside the handlers, so ``pretriever --help`` stays instant and never imports torch.
Exit codes: 0 success, 1 data or runtime error (cause on the first line of stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pretriever import __version__
from pretriever._progress import is_terminal
from pretriever.cli import (
    build,
    context,
    data,
    evaluate,
    index,
    optimize,
    pretrain,
    quickstart,
    rerank,
    search,
    serve,
    soup,
    train,
)
from pretriever.errors import ConfigError, PretrieverError

EPILOG = """\
examples:
  pretriever quickstart --dataset scifact
  pretriever build --dataset scifact --out pipelines/scifact
  pretriever data check --dataset scifact
  pretriever evaluate --dataset scifact --retriever bm25 --retriever hybrid
  pretriever index bm25 --dataset scifact --out indexes/scifact-bm25
  pretriever search --index indexes/scifact-bm25 "do statins reduce mortality?" -k 5
  pretriever context --index indexes/scifact-bm25 --corpus scifact "do statins reduce mortality?"
  pretriever serve indexes/scifact-bm25 --corpus scifact --port 8000
  pretriever pretrain --dataset scifact --out models/sf-pre
  pretriever train --dataset scifact --out models/sf-dense
  pretriever train-reranker --dataset scifact --first-stage hybrid --out models/sf-reranker
  pretriever evaluate --dataset scifact --retriever hybrid --reranker models/sf-reranker

One vocabulary across commands: --dataset, --model (the bi-encoder; --base too where a model
is trained), --reranker (a cross-encoder), --first-stage (the candidates a later stage reads),
--depth (how many of them it reads), -k (results returned), --precision, --out, --overwrite,
--lenient, --quiet, --config and --set KEY=VALUE. Datasets are BEIR folders given by path, or
by name under $PRETRIEVER_DATA. Run `pretriever COMMAND --help` for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretriever",
        description="Index, search and evaluate retrievers over your own corpus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pretriever {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (quickstart, build, data, index, search, context, serve, evaluate, rerank, optimize,
                   pretrain, train, soup):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
    if getattr(args, "quiet", False) or not is_terminal():
        # transformers' and huggingface_hub's own bars (loading and writing weights): one unreadable
        # line in a log; our progress lines say what is running
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"pretriever: error: {exc}", file=sys.stderr)
        return 2
    except PretrieverError as exc:
        print(f"pretriever: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, ...: say what, not a traceback
        print(f"pretriever: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pretriever: interrupted", file=sys.stderr)
        return 130
