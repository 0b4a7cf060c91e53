"""``pretriever index bm25 --dataset D --out DIR``: build an index folder."""

from __future__ import annotations

import argparse
import time

from pretriever.cli._common import add_dataset_args, show_progress


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("index", help="build an index folder from a corpus")
    sub = parser.add_subparsers(title="index types", metavar="TYPE")
    bm25 = sub.add_parser(
        "bm25",
        help="lexical BM25 (bm25s, stopwords + Snowball stemming)",
        description="Build a BM25 index over title + text of every document and save it as a "
        "folder with a manifest. The folder appears only when complete.",
        epilog="example: pretriever index bm25 --dataset scifact --out indexes/scifact-bm25",
    )
    add_dataset_args(bm25)
    bm25.add_argument("--out", "-o", required=True, metavar="DIR", help="index folder to create")
    bm25.add_argument("--k1", type=float, default=1.5, help="term-frequency saturation (default 1.5)")
    bm25.add_argument("--b", type=float, default=0.75, help="length normalisation (default 0.75)")
    bm25.add_argument("--method", default="lucene",
                      choices=["lucene", "robertson", "atire", "bm25l", "bm25+"],
                      help="BM25 variant (default lucene)")
    bm25.add_argument("--stopwords", default="en", help="stopword list: 'en' (default) or 'none'")
    bm25.add_argument("--stemmer", default="english",
                      help="Snowball stemmer language (default english) or 'none'")
    bm25.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    bm25.set_defaults(handler=run_bm25)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_bm25(args: argparse.Namespace) -> int:
    from pretriever.data.dataset import load_dataset
    from pretriever.indexes.bm25 import BM25Index

    dataset = load_dataset(args.dataset, lenient=args.lenient)
    start = time.perf_counter()
    index = BM25Index(k1=args.k1, b=args.b, method=args.method, stopwords=args.stopwords,
                      stemmer=args.stemmer, progress=show_progress())
    index.build(dataset.corpus)
    path = index.save(args.out, overwrite=args.overwrite)
    print(f"indexed {len(index):,} documents of {dataset.name} in "
          f"{time.perf_counter() - start:.1f}s -> {path}")
    return 0
