"""``pretriever index bm25|dense|sparse|colbert|hybrid|rerank|merge``: build index folders."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from pretriever._io import fresh_output, work_folder
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

DENSE_EPILOG = """\
examples:
  pretriever index dense --dataset scifact --out indexes/scifact-dense
  pretriever index dense --dataset scifact --out indexes/scifact-hnsw --ann hnsw
  # encode on 4 machines/GPUs (or under torchrun / a scheduler with --shard auto), then merge:
  pretriever index dense --dataset scifact --out indexes/sf --shard 0/4     # ... up to 3/4
  pretriever index merge --dataset scifact --out indexes/sf

A killed encoding resumes where it stopped when the same command is run again (the work folder
DIR.work keeps the finished chunks; it is removed once the index is complete).
"""


BM25_PRF_HELP = ("pseudo-relevance feedback: rm3 (Pyserini's defaults: 10 documents, 10 terms, original "
                 "weight 0.5), options as rm3:fb_docs=5,fb_terms=20,original_weight=0.7,max_query_terms=3; "
                 "or none (default)")
DENSE_PRF_HELP = ("pseudo-relevance feedback: rocchio (query + 0.5 x the mean of its top 3 documents), "
                  "options as rocchio:fb_docs=5,alpha=1,beta=0.3; or none (default)")


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
    add_output_args(bm25, "index folder to create")
    bm25.add_argument("--k1", type=float, default=1.5, help="term-frequency saturation (default 1.5)")
    bm25.add_argument("--b", type=float, default=0.75, help="length normalisation (default 0.75)")
    bm25.add_argument("--method", default="lucene",
                      choices=["lucene", "robertson", "atire", "bm25l", "bm25+"],
                      help="BM25 variant (default lucene)")
    bm25.add_argument("--stopwords", default="en", help="stopword list: 'en' (default) or 'none'")
    bm25.add_argument("--stemmer", default="english",
                      help="Snowball stemmer language (default english) or 'none'")
    bm25.add_argument("--prf", metavar="METHOD", default="none", help=BM25_PRF_HELP)
    add_quiet_arg(bm25)
    bm25.set_defaults(handler=run_bm25)

    sparse = sub.add_parser(
        "sparse",
        help="learned sparse (SPLADE or inference-free) over an inverted index, exact or Seismic",
        description="Encode every document into a sparse vector over the model's vocabulary and index "
        "the postings. --sparse-kind inference-free (default) weights query tokens by their IDF on "
        "this corpus (no model at query time); splade expands queries with the model too. The "
        "bundled MiniLM has no trained MLM head (its start is the identity transform tied to the "
        "word embeddings): give a trained sparse model (pretriever train --kind sparse, or a "
        "published one) for real use.",
        epilog="example: pretriever index sparse --dataset scifact --model models/sf-sparse "
        "--out indexes/scifact-sparse --seismic",
    )
    add_dataset_args(sparse)
    add_model_arg(sparse, "sparse model folder or hub id, or an MLM model (default: the bundled MiniLM)")
    add_output_args(sparse, "index folder to create")
    sparse.add_argument("--sparse-kind", default="inference-free", choices=["inference-free", "splade"],
                        help="how queries are encoded when --model is not a sparse model already "
                        "(default inference-free)")
    sparse.add_argument("--seismic", action="store_true",
                        help="approximate search with Seismic (pyseismic-lsr) instead of exact")
    sparse.add_argument("--batch-size", type=int, default=32, help="documents encoded at once (default 32)")
    add_quiet_arg(sparse)
    sparse.set_defaults(handler=run_sparse)

    hybrid = sub.add_parser(
        "hybrid", help="BM25 + dense, fused (a pipeline folder)",
        description="Build BM25 and a dense index and save them as one pipeline folder whose "
        "search fuses both runs (min-max normalised weighted sum by default).",
        epilog="examples:\n  pretriever index hybrid --dataset nfcorpus --out indexes/nf-hybrid "
        "--tune-on dev\n  pretriever evaluate --dataset nfcorpus --retriever indexes/nf-hybrid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(hybrid)
    add_output_args(hybrid, "pipeline folder to create")
    add_model_arg(hybrid, "dense model: a sentence-transformers folder or 'minilm' (default)")
    add_backend_args(hybrid)
    hybrid.add_argument("--fusion", default="wsum", choices=["wsum", "rrf"],
                        help="weighted sum of normalised scores (default) or reciprocal rank fusion")
    hybrid.add_argument("--norm", default="min-max", choices=["min-max", "z-score"],
                        help="score normalisation for wsum (default min-max)")
    hybrid.add_argument("--colbert", nargs="?", const="minilm", metavar="MODEL",
                        help="add a third member: late interaction (MaxSim over the union of the BM25 "
                        "and dense candidates) with MODEL's token vectors (default minilm, zero-shot)")
    hybrid.add_argument("--tune-on", metavar="SPLIT",
                        help="tune the wsum weights by grid search on this split (train or dev; "
                        "never test)")
    hybrid.add_argument("--bm25-prf", metavar="METHOD", default="none", help=BM25_PRF_HELP)
    hybrid.add_argument("--dense-prf", metavar="METHOD", default="none", help=DENSE_PRF_HELP)
    add_quiet_arg(hybrid)
    hybrid.set_defaults(handler=run_hybrid)

    rerank = sub.add_parser(
        "rerank", help="a first stage + a cross-encoder rerank stage (a pipeline folder)",
        description="Save a pipeline whose search takes a first stage's top --depth and reranks it "
        "with a cross-encoder. The first stage is bm25, dense or hybrid (built now over the corpus) "
        "or an index/pipeline folder; the pipeline keeps the document texts the reranker reads.",
        epilog="examples:\n  pretriever index rerank --dataset scifact --first-stage hybrid --reranker "
        "models/sf-reranker --out indexes/sf-reranked\n  pretriever evaluate --dataset scifact "
        "--retriever indexes/sf-reranked",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(rerank)
    add_first_stage_arg(rerank, "the candidates reranked (a run file cannot be a pipeline's first stage)",
                        required=True)
    rerank.add_argument("--reranker", required=True, metavar="DIR",
                        help="cross-encoder folder, or a late-interaction index folder (MaxSim)")
    add_output_args(rerank, "pipeline folder to create")
    add_depth_arg(rerank, "how many are reranked (default 100)", default=100)
    rerank.add_argument("--interpolation", type=float,
                        help="weight of the reranker's scores against the first stage's (default: the "
                        "reranker's own, tuned on held-out queries when it was trained; 1.0 = alone)")
    rerank.add_argument("--tune-on", metavar="SPLIT",
                        help="tune --interpolation on this split (dev, or queries the reranker was not "
                        "trained on; never test)")
    add_model_arg(rerank, "dense model of a first stage built now (dense, hybrid; default minilm)")
    add_backend_args(rerank)
    add_quiet_arg(rerank)
    rerank.set_defaults(handler=run_rerank)

    colbert = sub.add_parser(
        "colbert", help="multi-vector late interaction (ColBERT): compressed PLAID or exact MaxSim",
        description="Encode one vector per document token and save a late-interaction index.\n"
        "With a plain encoder (the default, bundled MiniLM) the token vectors are its own,\n"
        "normalised: zero-shot late interaction, no training. With a ColBERT folder (`pretriever\n"
        "train-colbert`, or PyLate's) they go through its projection. The default index compresses\n"
        "every token to its k-means centroid and a 2-bit residual (PLAID); --exact keeps every vector\n"
        "(float16) and searches by brute force. A killed encoding resumes when the same command is\n"
        "run again.",
        epilog="examples:\n"
        "  pretriever index colbert --dataset scifact --out indexes/sf-colbert\n"
        "  pretriever evaluate -d scifact --retriever indexes/sf-colbert\n"
        "  pretriever evaluate -d scifact --retriever hybrid --reranker indexes/sf-colbert  # rerank\n"
        "  pretriever index hybrid --dataset scifact --colbert --out indexes/sf-3way  # BM25+dense+MaxSim",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(colbert)
    add_output_args(colbert, "index folder to create")
    add_model_arg(colbert, "encoder or ColBERT folder; 'minilm' = bundled all-MiniLM-L6-v2, zero-shot "
                  "(default)")
    add_backend_args(colbert)
    colbert.add_argument("--exact", action="store_true",
                         help="keep every token vector and search by exact MaxSim (no compression)")
    colbert.add_argument("--centroids", type=int,
                         help="k-means centroids of the PLAID index (default: a power of two near "
                         "4 x sqrt(tokens))")
    colbert.add_argument("--nbits", type=int, default=2, choices=[1, 2, 4, 8],
                         help="bits per residual dimension (default 2)")
    colbert.add_argument("--nprobe", type=int, default=4, help="centroids probed per query token (default 4)")
    colbert.add_argument("--ndocs", type=int, default=64,
                         help="candidates decompressed and scored exactly per query (default 64)")
    colbert.add_argument("--batch-size", type=int, default=32, help="documents per batch (default 32)")
    colbert.add_argument("--work", metavar="DIR", help="encoding work folder (default: DIR.work)")
    add_quiet_arg(colbert)
    colbert.set_defaults(handler=run_colbert)

    for name, helptext in (("dense", "dense bi-encoder (exact search, or FAISS with --ann)"),
                           ("merge", "build a dense index from finished --shard encodings")):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
                           epilog=DENSE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_dataset_args(p)
        add_output_args(p, "index folder to create")
        p.add_argument("--work", metavar="DIR", help="encoding work folder (default: DIR.work)")
        p.add_argument("--ann", default="none", choices=["none", "flat", "hnsw", "ivfpq"],
                       help="none = exact search over memory-mapped vectors (default); flat, hnsw, "
                       "ivfpq = a FAISS index (needs pretriever[faiss])")
        p.add_argument("--prf", metavar="METHOD", default="none", help=DENSE_PRF_HELP)
        add_quiet_arg(p)
        if name == "dense":
            add_model_arg(p, "sentence-transformers folder or hub id; 'minilm' = bundled all-MiniLM-L6-v2 "
                          "(default)")
            p.add_argument("--batch-size", type=int, default=32, help="documents per batch (default 32)")
            add_backend_args(p)
            p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                           help="storage type of the vectors (default float32)")
            p.add_argument("--shard", metavar="I/N",
                           help="encode only shard I of N (0-based) into the work folder; 'auto' "
                           "reads RANK/WORLD_SIZE (torchrun) or SLURM_PROCID/SLURM_NTASKS")
            p.set_defaults(handler=run_dense)
        else:
            p.set_defaults(handler=run_merge)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_bm25(args: argparse.Namespace) -> int:
    from pretriever.feedback import parse_feedback
    from pretriever.indexes.bm25 import BM25Index

    fresh_output(args.out, args.overwrite)  # before the work, not after it
    dataset = dataset_from(args)
    start = time.perf_counter()
    index = BM25Index(k1=args.k1, b=args.b, method=args.method, stopwords=args.stopwords,
                      stemmer=args.stemmer, progress=show_progress(args), feedback=parse_feedback(args.prf))
    index.build(dataset.corpus)
    path = index.save(args.out, overwrite=args.overwrite)
    print(f"indexed {len(index):,} documents of {dataset.name} in "
          f"{time.perf_counter() - start:.1f}s -> {path}")
    return 0


def run_sparse(args: argparse.Namespace) -> int:
    from pretriever.encoders.sparse import SparseEncoder
    from pretriever.indexes.sparse import SeismicSparseIndex, SparseIndex

    fresh_output(args.out, args.overwrite)
    dataset = dataset_from(args)
    start = time.perf_counter()
    corpus = dataset.corpus
    idf = corpus.contents() if args.sparse_kind == "inference-free" else None
    encoder = SparseEncoder(args.model, kind=args.sparse_kind, idf=idf, batch_size=args.batch_size)
    cls = SeismicSparseIndex if args.seismic else SparseIndex
    index = cls(encoder, progress=show_progress(args)).build(corpus)
    path = index.save(args.out, overwrite=args.overwrite)
    stats = index.stats()
    print(f"indexed {len(index):,} documents of {dataset.name} ({encoder.sparse_kind}, "
          f"{stats['terms_per_document']:.0f} terms per document) in "
          f"{time.perf_counter() - start:.1f}s -> {path}")
    return 0


def _shard(text: str | None):  # -> Shard | None
    from pretriever.encoding import Shard

    if text is None:
        return None
    if text == "auto":
        for rank, size in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
            if rank in os.environ and size in os.environ:
                return Shard(int(os.environ[rank]), int(os.environ[size]))
        return Shard(0, 1)
    return Shard.parse(text)


def _dense_index(args: argparse.Namespace, encoder: object, work: Path):
    from pretriever.feedback import parse_feedback
    from pretriever.indexes.ann import FaissIndex
    from pretriever.indexes.dense import FlatIndex

    common = {"batch_size": getattr(args, "batch_size", 32), "dtype": getattr(args, "dtype", "float32"),
              "work_dir": work, "progress": show_progress(args), "feedback": parse_feedback(args.prf)}
    if args.ann == "none":
        return FlatIndex(encoder, **common)
    return FaissIndex(encoder, index_type=args.ann, **common)


def _device_for_rank() -> str | None:
    """Under torchrun, each process takes the GPU of its LOCAL_RANK."""
    if "LOCAL_RANK" not in os.environ:
        return None
    import torch

    return f"cuda:{os.environ['LOCAL_RANK']}" if torch.cuda.is_available() else None


def run_dense(args: argparse.Namespace) -> int:
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.encoding import encode_shard

    out = fresh_output(args.out, args.overwrite)
    work = work_folder(out, args.work)
    dataset = dataset_from(args)
    encoder = DenseEncoder(args.model, batch_size=args.batch_size, device=_device_for_rank(),
                           backend=args.backend, precision=args.precision)
    shard = _shard(args.shard)
    start = time.perf_counter()
    if shard is not None and shard.count > 1:
        folder = encode_shard(encoder, dataset.corpus, work, shard=shard, batch_size=args.batch_size,
                              dtype=args.dtype, progress=show_progress(args))
        print(f"shard {shard.index}/{shard.count} of {dataset.name} encoded in "
              f"{time.perf_counter() - start:.1f}s -> {folder}")
        print(f"when every shard is done: pretriever index merge --dataset {args.dataset} "
              f"--work {work} --out {out}" + (f" --ann {args.ann}" if args.ann != "none" else ""))
        return 0
    index = _dense_index(args, encoder, work).build(dataset.corpus)
    index.save(out, overwrite=args.overwrite)
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    print(f"indexed {len(index):,} documents of {dataset.name} in {seconds:.1f}s "
          f"({len(index) / seconds:.1f} docs/s) -> {out}")
    return 0


def run_merge(args: argparse.Namespace) -> int:

    out = fresh_output(args.out, args.overwrite)
    work = work_folder(out, args.work)
    dataset = dataset_from(args)
    index = _dense_index(args, "minilm", work).build_from_shards(dataset.corpus, work)
    index.save(out, overwrite=args.overwrite)
    shutil.rmtree(work, ignore_errors=True)
    print(f"merged {len(index):,} vectors of {dataset.name} -> {out}")
    return 0


def run_hybrid(args: argparse.Namespace) -> int:
    from pretriever.feedback import parse_feedback
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.retrieval.fusion import Fusion
    from pretriever.retrieval.spec import build_named

    out = fresh_output(args.out, args.overwrite)
    fusion = Fusion(args.fusion, args.norm)  # validate before minutes of encoding
    rm3, rocchio = parse_feedback(args.bm25_prf), parse_feedback(args.dense_prf)
    if (rm3 is not None and rm3.name != "rm3") or (rocchio is not None and rocchio.name != "rocchio"):
        from pretriever.errors import ConfigError

        raise ConfigError("--bm25-prf takes rm3 (or none) and --dense-prf rocchio (or none)")
    if args.tune_on == "test":
        from pretriever.errors import ConfigError

        raise ConfigError("fusion weights must not be tuned on the test split; use --tune-on train or dev")
    dataset = dataset_from(args)
    start = time.perf_counter()
    work = work_folder(out)
    pipeline = build_named("hybrid", dataset, model=args.model, progress=show_progress(args),
                           work_dir=work, backend=args.backend,
                           precision=args.precision)
    if args.colbert:
        late = _colbert_index(args, args.colbert, work / "colbert")
        pipeline.retrievers["colbert"] = late.build(dataset.corpus)
    pipeline.fusion = fusion
    if rm3 is not None:  # RM3 reads the documents' term counts, kept only by an index built with it
        bm25 = BM25Index(progress=show_progress(args), feedback=rm3)
        pipeline.retrievers["bm25"] = bm25.build(dataset.corpus)
    pipeline.retrievers["dense"].feedback = rocchio
    if args.tune_on:
        score = pipeline.tune(dataset.qrels(args.tune_on), dataset.split_queries(args.tune_on),
                              split=args.tune_on)
        print(f"tuned weights on {args.tune_on}: {pipeline.fusion.weights} (nDCG@10 {score:.4f} there)")
    pipeline.save(out, overwrite=args.overwrite)
    shutil.rmtree(work, ignore_errors=True)
    print(f"built hybrid pipeline over {len(dataset.corpus):,} documents of {dataset.name} in "
          f"{time.perf_counter() - start:.1f}s -> {out}")
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    from pretriever.errors import ConfigError
    from pretriever.retrieval.loading import check_reranker, load_index, load_reranker
    from pretriever.retrieval.pipeline import Pipeline
    from pretriever.retrieval.spec import build_named, check_same_corpus, is_named

    out = fresh_output(args.out, args.overwrite)
    if args.tune_on == "test":
        raise ConfigError("the interpolation must not be tuned on the test split; use --tune-on dev")
    if Path(args.first_stage).is_file():
        raise ConfigError(f"--first-stage {args.first_stage} is a run file: a pipeline searches new "
                          "queries, so its first stage is bm25, dense, hybrid or an index folder (rerank a "
                          "run file with `pretriever rerank`)")
    reranker = load_reranker(args.reranker, backend=args.backend, precision=args.precision)
    dataset = dataset_from(args)
    check_reranker(reranker, dataset, args.reranker)
    start = time.perf_counter()
    work = work_folder(out)
    if is_named(args.first_stage):
        first = build_named(args.first_stage, dataset, model=args.model, progress=show_progress(args),
                            work_dir=work, backend=args.backend, precision=args.precision)
    else:
        first = load_index(args.first_stage)
        check_same_corpus(first, dataset, Path(args.first_stage))
    settings = {}
    if isinstance(first, Pipeline):  # its members, fusion, depth and late-interaction mode are kept
        members, fusion = first.retrievers, first.fusion
        settings = {"depth": first.depth, "late_interaction": first.late_interaction}
    else:
        members, fusion = {Path(args.first_stage).name: first}, None
    pipeline = Pipeline(members, fusion, reranker=reranker, rerank_depth=args.depth,
                        interpolation=args.interpolation, **settings).build(dataset.corpus)
    if args.tune_on:
        score = pipeline.tune_interpolation(dataset.qrels(args.tune_on), dataset.split_queries(args.tune_on),
                                            split=args.tune_on)
        print(f"tuned interpolation on {args.tune_on}: {pipeline.interpolation} (nDCG@10 {score:.4f} there)")
    pipeline.save(out, overwrite=args.overwrite)
    shutil.rmtree(work, ignore_errors=True)
    print(f"built {args.first_stage} > rerank pipeline over {len(dataset.corpus):,} documents of "
          f"{dataset.name} in {time.perf_counter() - start:.1f}s -> {out}")
    return 0


def _colbert_index(args: argparse.Namespace, model: str, work: Path):
    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.indexes.late_interaction import MaxSimIndex
    from pretriever.indexes.plaid import PlaidIndex

    batch_size = getattr(args, "batch_size", 32)
    encoder = ColBERTEncoder(model, batch_size=batch_size, device=_device_for_rank(), backend=args.backend,
                             precision=args.precision)
    common = {"batch_size": batch_size, "work_dir": work, "progress": show_progress(args)}
    if getattr(args, "exact", False):
        return MaxSimIndex(encoder, **common)
    return PlaidIndex(encoder, centroids=getattr(args, "centroids", None), nbits=getattr(args, "nbits", 2),
                      nprobe=getattr(args, "nprobe", 4), ndocs=getattr(args, "ndocs", 64), **common)


def run_colbert(args: argparse.Namespace) -> int:
    out = fresh_output(args.out, args.overwrite)
    work = work_folder(out, args.work)
    dataset = dataset_from(args)
    start = time.perf_counter()
    index = _colbert_index(args, args.model, work).build(dataset.corpus)
    index.save(out, overwrite=args.overwrite)
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(out).iterdir() if p.suffix == ".npy")
    print(f"indexed {len(index):,} documents ({index.tokens_count:,} token vectors, {size / len(index):,.0f} "
          f"bytes per document) of {dataset.name} in {seconds:.1f}s -> {out}")
    return 0
