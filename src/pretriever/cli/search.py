"""``pretriever search --index DIR "query text"``: search a saved index from the shell."""

from __future__ import annotations

import argparse

from pretriever.cli._common import print_json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "search",
        help="search a saved index",
        description="Load an index folder and print the top-k documents for a query.",
        epilog='example: pretriever search --index indexes/scifact-bm25 "statins and mortality" -k 5',
    )
    parser.add_argument("--index", "-i", required=True, metavar="DIR", help="index folder")
    parser.add_argument("query", help="the query text (quote it)")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.indexes.base import search_one
    from pretriever.retrieval.loading import load_index

    hits = search_one(load_index(args.index), args.query, k=args.k)
    if args.json:
        print_json({"query": args.query,
                    "hits": [{"rank": h.rank, "doc_id": h.doc_id, "score": h.score} for h in hits]})
        return 0
    if not hits:
        print("no matching documents")
    for h in hits:
        print(f"{h.rank:>4}  {h.score:10.4f}  {h.doc_id}")
    return 0
