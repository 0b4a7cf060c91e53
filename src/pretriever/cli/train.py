"""``pretriever train`` (a bi-encoder) and ``pretriever train-reranker`` (a cross-encoder) on a
dataset's labelled pairs."""

from __future__ import annotations

import argparse

from pretriever.cli._common import info, show_progress

RERANKER_DESCRIPTION = """\
Train a cross-encoder reranker on the qrels of --split (default train) with hard negatives
from a first stage (bm25, dense, hybrid, an index folder or a run file). Each training group
is one relevant document and --negatives hard negatives (plus --random-negatives random ones);
documents judged relevant are never negatives. Loss: listwise softmax (default) or pointwise
BCE; --curriculum down-weights hard groups early (MacAvaney et al. 2020). The dataset's dev
split, else a held-out 10% of the training queries, is reranked after each epoch and the best
weights are kept. Checkpoints go to OUT.work: rerun the same command after a kill to resume.
A --config file (TOML/YAML/JSON) can hold every setting; flags override it."""


TRAIN_DESCRIPTION = """\
Fine-tune a dense bi-encoder on the qrels of --split (default train). Each example is a query,
one relevant document and its negatives: --negatives hard ones from a first stage (bm25,
dense, hybrid, an index folder or a run file; STAR) plus --random-negatives random ones;
documents judged relevant are never negatives, and a query appears once per batch. Loss:
InfoNCE over in-batch and hard negatives (default), margin-MSE distillation from --teacher (a
reranker folder or a run file of teacher scores), or both. The dev split, else a held-out 10%
of the training queries, is scored after each epoch; the best weights are kept. Checkpoints go
to OUT.work: rerun the same command after a kill to resume. A --config file (TOML/YAML/JSON)
can hold every setting; flags override it. The result is a plain sentence-transformers folder."""


def register(commands: argparse._SubParsersAction) -> None:
    bi = commands.add_parser(
        "train", help="fine-tune a dense bi-encoder", description=TRAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever train --dataset scifact --first-stage bm25 --out models/sf-dense\n"
        "  pretriever train --dataset scifact --loss margin-mse --teacher models/sf-reranker "
        "--out models/sf-distilled\n"
        "  pretriever evaluate --dataset scifact --retriever dense --model models/sf-dense",
    )
    _shared(bi)
    bi.add_argument("--teacher", metavar="DIR|FILE", help="reranker folder or run file of teacher scores")
    bi.add_argument("--loss", choices=["infonce", "margin-mse", "both"], help="default infonce")
    bi.add_argument("--negatives", type=int, help="hard negatives per example (default 1)")
    bi.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    bi.add_argument("--max-length", type=int,
                    help="document tokens per training example (default 256); 128 trains about 3-4x "
                    "faster. The saved model keeps the base's own max length for search")
    bi.add_argument("--curriculum", action="store_true", default=None,
                    help="easy-to-hard negatives: early epochs draw from the deep half of the ranking")
    bi.add_argument("--reweight-high", type=float,
                    help="drop this share of the highest-loss examples of each batch (default 0)")
    bi.add_argument("--reweight-low", type=float,
                    help="drop this share of the lowest-loss examples of each batch (default 0)")
    bi.add_argument("--sampling", choices=["star", "tasb", "adore"],
                    help="star (default): examples in random order; tasb: batches from one query cluster "
                    "with margin-balanced negatives (Hofstaetter et al. 2021); adore: query encoder "
                    "trained against a fixed document index, negatives re-mined every --adore-every "
                    "steps (Zhan et al. 2021; also writes OUT-index)")
    bi.add_argument("--adore-every", type=int, help="ADORE: re-mine negatives every N steps (default 10)")
    bi.add_argument("--lora-r", type=int, help="LoRA rank (default 0: full fine-tuning); merged on save")
    bi.add_argument("--grad-cache", type=int, metavar="CHUNK",
                    help="GradCache: embed the batch CHUNK texts at a time, so memory stays that of a "
                    "chunk whatever --batch-size (same gradient; about 1.3x the compute; default 0: off)")
    bi.set_defaults(handler=run_train)

    parser = commands.add_parser(
        "train-reranker", help="train a cross-encoder reranker", description=RERANKER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever train-reranker --dataset scifact --first-stage hybrid --out models/sf-reranker\n"
        "  pretriever index rerank --dataset scifact --from hybrid --reranker models/sf-reranker "
        "--out indexes/sf-reranked\n"
        "  pretriever evaluate --dataset scifact --retriever hybrid --retriever indexes/sf-reranked",
    )
    _shared(parser)
    parser.add_argument("--loss", choices=["listwise", "bce"], help="default listwise")
    parser.add_argument("--negatives", type=int, help="hard negatives per group (default 7)")
    parser.add_argument("--batch-size", type=int, help="groups per step (default 4)")
    parser.add_argument("--max-length", type=int, help="tokens per (query, document) pair (default 256)")
    parser.add_argument("--curriculum", action="store_true", default=None,
                        help="MacAvaney et al. 2020 difficulty curriculum")
    parser.add_argument("--head-lr-scale", type=float,
                        help="learning-rate multiplier of the new classifier head and pooler (default 1)")
    parser.set_defaults(handler=run_reranker)


def _shared(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", "-d", help="a BEIR folder or a name under $PRETRIEVER_DATA")
    parser.add_argument("--out", "-o", metavar="DIR", help="model folder to create")
    parser.add_argument("--config", metavar="FILE", help="settings file (.toml, .yaml or .json)")
    parser.add_argument("--split", help="qrels split to train on (default train)")
    parser.add_argument("--base", help="model to start from (default minilm)")
    parser.add_argument("--first-stage", help="bm25 (default) | dense | hybrid | INDEX_DIR | RUN_FILE")
    parser.add_argument("--random-negatives", type=int, help="random negatives per example (default 0)")
    parser.add_argument("--depth", type=int, help="mine hard negatives from this first-stage depth (100)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 1)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 3e-5)")
    parser.add_argument("--max-examples", type=int, help="use at most this many examples per epoch")
    parser.add_argument("--seed", type=int, help="seed of sampling and initialisation (default 42)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                        help="training precision (default auto: bf16 autocast where native)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _nested(args: argparse.Namespace) -> dict:
    return {"negatives.hard": args.negatives, "negatives.random": args.random_negatives,
            "negatives.depth": args.depth, "loop.epochs": args.epochs, "loop.lr": args.lr,
            "loop.seed": args.seed}


def run_train(args: argparse.Namespace) -> int:
    from pretriever.training.biencoder import TrainConfig, train
    from pretriever.training.config import build_config

    config = build_config(
        TrainConfig, args.config, dataset=args.dataset, out=args.out, split=args.split, base=args.base,
        loss=args.loss, teacher=args.teacher, first_stage=args.first_stage, batch_size=args.batch_size,
        max_length=args.max_length, max_examples=args.max_examples, curriculum=args.curriculum,
        reweight_high=args.reweight_high, reweight_low=args.reweight_low, precision=args.precision,
        sampling=args.sampling, adore_every=args.adore_every, grad_cache=args.grad_cache,
        **_nested(args), **{"lora.r": args.lora_r},
    )
    report = train(config, progress=show_progress(), overwrite=args.overwrite, log=info)
    dev = _dev_summary(report.loop)
    print(f"trained bi-encoder on {report.train_queries} queries ({report.examples_per_epoch} examples/"
          f"epoch, {report.loop.steps} steps, {report.loop.examples_per_second:.1f} examples/s){dev} -> "
          f"{report.folder}")
    return 0


def run_reranker(args: argparse.Namespace) -> int:
    from pretriever.training.config import build_config
    from pretriever.training.reranker import RerankerConfig, train_reranker

    config = build_config(
        RerankerConfig, args.config, dataset=args.dataset, out=args.out, split=args.split, base=args.base,
        loss=args.loss, first_stage=args.first_stage, batch_size=args.batch_size,
        max_length=args.max_length, max_examples=args.max_examples, curriculum=args.curriculum,
        precision=args.precision, head_lr_scale=args.head_lr_scale, **_nested(args),
    )
    report = train_reranker(config, progress=show_progress(), overwrite=args.overwrite, log=info)
    dev = _dev_summary(report.loop)
    print(f"trained reranker on {report.train_queries} queries ({report.examples_per_epoch} groups/"
          f"epoch, {report.loop.steps} steps, {report.loop.examples_per_second:.1f} pairs/s){dev} -> "
          f"{report.folder}")
    return 0


def _dev_summary(loop) -> str:  # LoopResult -> "; dev nDCG@10 a -> b (step n)"
    if not loop.best or not loop.history:
        return ""
    start, best = loop.history[0], loop.best
    kept = " (the starting model was best: kept)" if best["step"] == 0 else ""
    return (f"; dev nDCG@10 {start['score']:.4f} before, {best['score']:.4f} best at step "
            f"{best['step']}{kept}")
