"""``pretriever train`` (a bi-encoder), ``train-colbert`` (late interaction) and ``train-reranker``
(a cross-encoder) on a dataset's labelled pairs."""

from __future__ import annotations

import argparse

from pretriever.cli._common import (
    add_config_args,
    add_dataset_args,
    add_depth_arg,
    add_first_stage_arg,
    add_model_arg,
    add_output_args,
    add_quiet_arg,
    add_training_precision,
    info,
    show_progress,
)

TRAIN_DESCRIPTION = """\
Fine-tune a dense bi-encoder on the qrels of --split (default train). With no option but
--dataset and --out it runs the setting measured best (SciFact test: dense 0.6457 -> 0.7149,
hybrid 0.7286 -> 0.7517; benchmarks/RESULTS.md): TAS-Balanced batches (each from one cluster
of training queries) with one margin-balanced hard negative from the BM25 + dense hybrid's top
--depth (100), InfoNCE over in-batch and hard negatives, three epochs at lr 2e-5.

Other samplings: star (examples in random order, --negatives hard ones plus --random-negatives
random ones) and adore (the query encoder against a fixed document index, negatives re-mined
with the current model; also writes OUT-index, the index to search). Documents judged relevant
are never negatives, and a query appears once per batch. Loss: infonce, margin-mse from
--teacher (a reranker folder or a run file of teacher scores), or both. The dev split, else a
held-out 10% of the training queries, is scored before training and after each epoch; the
best weights are kept (the starting ones, said so, if training never beats them). Checkpoints
go to OUT.work: rerun the same command after a kill to resume. Every setting can be given with
--set or in a --config file (TOML/YAML/JSON), e.g. lora.r=16, curriculum=true,
reweight_high=0.1, adore_every=10, tasb_clusters=20, temperature=0.05. The result is a plain
sentence-transformers folder.

--kind sparse trains a learned sparse encoder (a weight per vocabulary term, searched from an
inverted index): inference-free by default (documents expanded by the model, queries only
tokenised and weighted by their IDF on the corpus), --set sparse_kind=splade for both sides.
Examples as for star sampling (one hard negative from the hybrid's top 100, two epochs at lr
5e-5, documents cut at 128 tokens for training, the saved model encodes 256), InfoNCE over sparse
dot products (or margin-mse / both with --teacher), plus the FLOPS regulariser on documents (and
queries for splade): --set flops.document=0.003 flops.query=0.003 flops.warmup_ratio=0.3;
flops.idf_aware=true scales each term's penalty by mean(IDF) / its IDF (off by default: plain
FLOPS scored higher on SciFact, RESULTS.md); the new MLM head learns at head_lr_scale (100) x lr.
Index the result with `pretriever index sparse --model OUT`."""

COLBERT_DESCRIPTION = """\
Fine-tune a late-interaction (ColBERT) model on the qrels of --split (default train): one vector
per token, a query scoring a document by MaxSim. From a plain encoder (default minilm) a new
128-dim projection is added, set from the corpus's token vectors (principal directions). Batches
and negatives are those of `pretriever train` (TAS-Balanced, one hard negative from the hybrid's
top --depth 100); documents are cut at --max-length 128 tokens for training only. Loss: InfoNCE
over MaxSim scores (default), KL to --teacher's score distribution (a reranker folder or a run
file of scores), or both. ColBERT's marker tokens and [MASK] query augmentation are options
(--set query_prefix=[unused0] document_prefix=[unused1] query_expansion=true). The dev split,
else a held-out 10% of the training queries, is reranked by MaxSim after each epoch; the best
weights are kept. Checkpoints go to OUT.work: rerun the same command after a kill to resume. The
result is a folder in PyLate's layout (PyLate and RAGatouille load it); index it with
`pretriever index colbert --model OUT`."""

RERANKER_DESCRIPTION = """\
Train a cross-encoder reranker on the qrels of --split (default train) with hard negatives
from a first stage. Each training group is one relevant document and --negatives hard
negatives (plus --random-negatives random ones); documents judged relevant are never
negatives. Loss: listwise softmax (default) or pointwise BCE (--set loss=bce); --set
curriculum=true down-weights hard groups early (MacAvaney et al. 2020); --set
head_lr_scale=20 trains the new classifier head faster. The dev split, else a held-out 10% of
the training queries, is reranked after each epoch and the best weights are kept; the weight
of the reranker's scores against the first stage's is then tuned on it and saved with the
model. Checkpoints go to OUT.work: rerun the same command after a kill to resume."""


def register(commands: argparse._SubParsersAction) -> None:
    bi = commands.add_parser(
        "train", help="fine-tune a dense bi-encoder", description=TRAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever train --dataset scifact --out models/sf-dense\n"
        "  pretriever evaluate --dataset scifact --retriever dense --retriever hybrid "
        "--model models/sf-dense\n"
        "  pretriever train --dataset scifact --sampling star --negatives 7 --first-stage bm25 "
        "--out models/sf-star\n"
        "  pretriever train --dataset scifact --loss both --teacher models/sf-reranker --sampling star "
        "--out models/sf-distilled\n"
        "  pretriever train --dataset nfcorpus --set lora.r=16 --lr 2e-4 --out models/nf-lora\n"
        "  pretriever train --kind sparse --dataset scifact --out models/sf-sparse\n"
        "  pretriever index sparse --dataset scifact --model models/sf-sparse --out indexes/sf-sparse",
    )
    _shared(bi, negatives=1, examples="lora.r=16, curriculum=true, adore_every=5, temperature=0.02")
    bi.add_argument("--kind", choices=["dense", "sparse"], default="dense",
                    help="dense (default): a bi-encoder; sparse: a learned sparse encoder (see above)")
    bi.add_argument("--sampling", choices=["tasb", "star", "adore"], help="default tasb (see above)")
    bi.add_argument("--teacher", metavar="DIR|FILE", help="reranker folder or run file of teacher scores")
    bi.add_argument("--loss", choices=["infonce", "margin-mse", "both"], help="default infonce")
    bi.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    bi.add_argument("--max-length", type=int,
                    help="document tokens per training example (default 256; 128 with --kind sparse); "
                    "128 trains about 3-4x faster. The saved model keeps the base's own max length for "
                    "search")
    bi.add_argument("--grad-cache", type=int, metavar="CHUNK",
                    help="GradCache: embed the batch CHUNK texts at a time, so memory stays that of a "
                    "chunk whatever --batch-size (same gradient; about 1.3x the compute; default 0: off)")
    bi.set_defaults(handler=run_train)

    colbert = commands.add_parser(
        "train-colbert", help="fine-tune a late-interaction (ColBERT) model", description=COLBERT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever train-colbert --dataset scifact --out models/sf-colbert\n"
        "  pretriever index colbert --dataset scifact --model models/sf-colbert --out indexes/sf-colbert\n"
        "  pretriever evaluate -d scifact -r bm25 -r bm25+colbert --model models/sf-colbert\n"
        "  pretriever train-colbert --dataset scifact --loss kl --teacher models/sf-reranker --sampling star "
        "--negatives 7 --out models/sf-colbert-kd",
    )
    _shared(colbert, negatives=1, examples="dim=96, query_length=32, temperature=0.5")
    colbert.add_argument("--sampling", choices=["tasb", "star"], help="default tasb")
    colbert.add_argument("--teacher", metavar="DIR|FILE",
                         help="reranker folder or run file of teacher scores")
    colbert.add_argument("--loss", choices=["infonce", "kl", "both"], help="default infonce")
    colbert.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    colbert.add_argument("--max-length", type=int,
                         help="document tokens per training example (default 128); the saved model keeps "
                         "the base's own length for search")
    colbert.set_defaults(handler=run_colbert)

    cross = commands.add_parser(
        "train-reranker", help="train a cross-encoder reranker", description=RERANKER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever train-reranker --dataset scifact --first-stage hybrid --out models/sf-reranker\n"
        "  pretriever evaluate --dataset scifact --retriever hybrid --reranker models/sf-reranker\n"
        "  pretriever index rerank --dataset scifact --first-stage hybrid --reranker models/sf-reranker "
        "--out indexes/sf-reranked",
    )
    _shared(cross, negatives=7, examples="loss=bce, head_lr_scale=20, curriculum=true")
    cross.add_argument("--batch-size", type=int, help="groups per step (default 4)")
    cross.add_argument("--max-length", type=int, help="tokens per (query, document) pair (default 256)")
    cross.set_defaults(handler=run_reranker)


def _shared(parser: argparse.ArgumentParser, negatives: int, examples: str) -> None:
    add_dataset_args(parser, required=False)
    add_output_args(parser, "model folder to create", required=False)
    add_model_arg(parser, "model to start from: a sentence-transformers folder or 'minilm' (default)",
                  default=None, trained_from=True)
    parser.add_argument("--split", help="qrels split to train on (default train)")
    add_first_stage_arg(parser, "where hard negatives come from (default: hybrid for train, bm25 for "
                        "train-reranker); a dense or hybrid one is built with MiniLM unless "
                        "--set first_stage_model=DIR")
    add_depth_arg(parser, "hard negatives are drawn from the top N (default 100)")
    parser.add_argument("--negatives", type=int, help=f"hard negatives per example (default {negatives})")
    parser.add_argument("--random-negatives", type=int, help="random negatives per example (default 0)")
    parser.add_argument("--epochs", type=int,
                        help="training epochs (default 3 for train, 2 for train --kind sparse, 1 for "
                        "train-reranker)")
    parser.add_argument("--lr", type=float,
                        help="peak learning rate (default 2e-5 for train, 5e-5 for train --kind sparse, "
                        "3e-5 for train-reranker)")
    parser.add_argument("--max-examples", type=int, help="use at most this many examples per epoch")
    parser.add_argument("--seed", type=int, help="seed of sampling and initialisation (default 42)")
    add_training_precision(parser)
    add_config_args(parser, examples)
    add_quiet_arg(parser)


def _common_settings(args: argparse.Namespace) -> dict:
    return {"dataset": args.dataset, "out": args.out, "split": args.split, "base": args.model,
            "first_stage": args.first_stage, "batch_size": args.batch_size, "max_length": args.max_length,
            "max_examples": args.max_examples, "precision": args.precision, "lenient": args.lenient,
            "negatives.hard": args.negatives, "negatives.random": args.random_negatives,
            "negatives.depth": args.depth, "loop.epochs": args.epochs, "loop.lr": args.lr,
            "loop.seed": args.seed}


def run_train(args: argparse.Namespace) -> int:
    from pretriever.training.biencoder import TrainConfig
    from pretriever.training.config import build_config
    from pretriever.training.registry import train

    if args.kind == "sparse":
        return run_sparse(args)

    config = build_config(TrainConfig, args.config, sets=args.sets, loss=args.loss, teacher=args.teacher,
                          sampling=args.sampling, grad_cache=args.grad_cache, **_common_settings(args))
    report = train(config, progress=show_progress(args), overwrite=args.overwrite, log=info)
    print(_trained("bi-encoder", report))
    return 0


def run_sparse(args: argparse.Namespace) -> int:
    from pretriever.errors import ConfigError
    from pretriever.training.config import build_config
    from pretriever.training.sparse import SparseTrainConfig, train_sparse

    refused = [flag for flag, value in (("--sampling", args.sampling), ("--grad-cache", args.grad_cache))
               if value not in (None, "star")]
    if refused:
        raise ConfigError(f"{', '.join(refused)} apply to dense training; --kind sparse draws STAR examples "
                          "(--sampling star, a query once per batch) and embeds each batch at once")
    config = build_config(SparseTrainConfig, args.config, sets=args.sets, loss=args.loss,
                          teacher=args.teacher, **_common_settings(args))
    report = train_sparse(config, progress=show_progress(args), overwrite=args.overwrite, log=info)
    print(_trained("a sparse encoder", report))
    return 0


def run_colbert(args: argparse.Namespace) -> int:
    from pretriever.training.colbert import ColBERTConfig, train_colbert
    from pretriever.training.config import build_config

    config = build_config(ColBERTConfig, args.config, sets=args.sets, loss=args.loss, teacher=args.teacher,
                          sampling=args.sampling, **_common_settings(args))
    report = train_colbert(config, progress=show_progress(args), overwrite=args.overwrite, log=info)
    print(_trained("ColBERT", report))
    return 0


def run_reranker(args: argparse.Namespace) -> int:
    from pretriever.training.config import build_config
    from pretriever.training.reranker import RerankerConfig, train_reranker

    config = build_config(RerankerConfig, args.config, sets=args.sets, **_common_settings(args))
    report = train_reranker(config, progress=show_progress(args), overwrite=args.overwrite, log=info)
    print(_trained("reranker", report, examples="groups", rate="pairs"))
    return 0


def _trained(what: str, report, examples: str = "examples", rate: str = "examples") -> str:
    """The line a trainer command prints: what it trained on, how fast, the dev scores, where."""
    counts, loop = report.counts, report.loop
    return (f"trained {what} on {counts['train_queries']:,} queries ({counts['examples_per_epoch']:,} "
            f"{examples}/epoch, {loop.steps} steps, {loop.examples_per_second:.1f} {rate}/s)"
            f"{_dev_summary(loop)} -> {report.folder}")


def _dev_summary(loop) -> str:  # LoopResult -> "; dev nDCG@10 a -> b (step n)"
    if not loop.best or not loop.history:
        return ""
    start, best = loop.history[0], loop.best
    kept = " (the starting model was best: kept)" if best["step"] == 0 else ""
    return (f"; dev nDCG@10 {start['score']:.4f} before, {best['score']:.4f} best at step "
            f"{best['step']}{kept}")
