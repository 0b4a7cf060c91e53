"""``pretriever context --index DIR "question"``: the cited context a language model would read."""

from __future__ import annotations

import argparse

from pretriever.cli._common import add_texts_corpus_arg, print_json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "context",
        help="retrieve and pack a cited context for a question (RAG)",
        description="Search an index and pack the best passages into one text of at most --budget tokens: "
                    "near-duplicates dropped, the strongest at the start and the end, each passage "
                    "prefixed with [doc id]. Prints the text, then where each citation sits in it.",
        epilog='example: pretriever context --index indexes/scifact-bm25 --corpus scifact '
               '"do statins reduce mortality?" --budget 512',
    )
    parser.add_argument("--index", "-i", required=True, metavar="DIR", help="index or pipeline folder")
    parser.add_argument("query", help="the question (quote it)")
    parser.add_argument("-k", type=int, default=10, help="passages retrieved before packing (default 10)")
    parser.add_argument("--budget", type=int, default=1024,
                        help="most tokens in the context, counted by the bundled MiniLM tokenizer "
                        "(default 1024)")
    parser.add_argument("--max-overlap", type=float, default=0.8,
                        help="word 3-gram overlap (Jaccard) from which a passage is a near-duplicate of a "
                        "better one and is dropped (default 0.8)")
    parser.add_argument("--order", default="edges", choices=["edges", "rank"],
                        help="edges: strongest passages at the start and the end (default); rank: in rank "
                        "order")
    add_texts_corpus_arg(parser)
    parser.add_argument("--json", action="store_true", help="print the context and citations as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.cli.serve import corpus_file
    from pretriever.retrieval.live import LiveIndex
    from pretriever.serve.service import Limits, Service

    live = LiveIndex.open(args.index, corpus=corpus_file(args.corpus), readonly=True)  # beside a server
    try:
        limits = Limits(max_k=max(args.k, Limits.max_k), max_budget=max(args.budget, Limits.max_budget))
        service = Service(live, limits=limits, batching=False)  # limits guard a server, not a shell
        packed = service.context(args.query, k=args.k, budget=args.budget, max_overlap=args.max_overlap,
                                 order=args.order)
    finally:
        live.close()
    if args.json:
        print_json({"query": args.query, **packed})
        return 0
    if not packed["citations"]:
        print("no matching documents")
        return 0
    print(packed["text"])
    print()
    print(f"citations ({packed['tokens']} tokens):")
    for c in packed["citations"]:
        print(f"  [{c['doc_id']}]  rank {c['rank']}  score {c['score']:.4f}  chars {c['start']}-{c['end']}")
    for label, ids in (("dropped as near-duplicates", packed["dropped_duplicates"]),
                       ("left out (over budget)", packed["over_budget"])):
        if ids:
            print(f"{label}: {', '.join(ids)}")
    return 0
