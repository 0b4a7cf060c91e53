"""The ``pretriever`` command: a thin adapter over the Python API.

Each subcommand lives in its own module with ``register(subparsers)``; heavy libraries are
imported inside the handlers, so ``pretriever --help`` stays instant and never imports torch.
Exit codes: 0 success, 1 data or runtime error (cause on the first line of stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pretriever import __version__
from pretriever.cli import data, evaluate, index, optimize, pretrain, quickstart, rerank, search, soup, train
from pretriever.errors import ConfigError, PretrieverError

EPILOG = """\
examples:
  pretriever quickstart --dataset scifact
  pretriever data check scifact
  pretriever evaluate --dataset scifact --retriever bm25
  pretriever index bm25 --dataset scifact --out indexes/scifact-bm25
  pretriever search --index indexes/scifact-bm25 "do statins reduce mortality?" -k 5
  pretriever pretrain --dataset scifact --tasks bfs --out models/sf-bfs
  pretriever train-reranker --dataset scifact --first-stage hybrid --out models/sf-reranker
  pretriever evaluate --dataset scifact --retriever hybrid --rerank models/sf-reranker

Datasets are BEIR folders given by path, or by name under $PRETRIEVER_DATA.
Run `pretriever COMMAND --help` for the options of each command.
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
    for module in (quickstart, data, index, search, evaluate, rerank, optimize, pretrain, train, soup):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return 2
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
