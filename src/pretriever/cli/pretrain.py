"""``pretriever pretrain``: zero-label pre-training of a bi-encoder on a corpus."""

from __future__ import annotations

import argparse

from pretriever.cli._common import (
    add_config_args,
    add_dataset_args,
    add_model_arg,
    add_output_args,
    add_quiet_arg,
    add_training_precision,
    info,
    show_progress,
)

DESCRIPTION = """\
Adapt a bi-encoder to a corpus with self-supervised tasks built from the corpus alone: no
queries and no relevance labels are read. With no option but --dataset and --out it runs the
best zero-label recipe measured: the lexical task, 2,048 examples (one epoch), lr 2e-5, with
GradCache chosen so that a step fits in a few GB (SciFact and NFCorpus test gains and the
peak memory are in benchmarks/RESULTS.md).

Tasks (comma-separated in --tasks; with several, each batch holds one task's examples):
  lexical   a title or sentence -> the score margins that the starting model plus BM25 give
            its candidates, and in-batch distillation over topic batches (Spar-style; default)
  ict       Inverse Cloze Task: a sentence -> its passage, the sentence removed 90% of the time
  bfs       Body First Selection: the title (else first sentence) -> a random body passage
  cropping  Contriever: two random spans of a document (a MoCo queue with cropping.queue=N)
  prop      PROP: the likelier of two word sets sampled from the document scores higher, + MLM
  retromae  RetroMAE: masked auto-encoding through a one-layer decoder fed by the embedding
  dupmae    retromae + DupMAE's bag-of-words head
A task's own options are set with --set TASK.KEY=VALUE or a [TASK] table in --config:
  lexical.weight (3)  lexical.negatives (7)  lexical.depth (30)  lexical.inbatch (4)
  lexical.topic_batches (true)  ict.remove_rate (0.9)  ict.passage_words (100)
  bfs.passage_words (100)  cropping.ratio_min (0.1)  cropping.ratio_max (0.5)  cropping.queue (0)
  cropping.momentum (0.999)  prop.mu (100)  prop.mean_length (3)  prop.mlm_weight (1)
  prop.mask_rate (0.15)  retromae.encoder_rate (0.3)  retromae.decoder_rate (0.5)

--kind sparse trains a learned sparse encoder instead (inference-free by default, --set
sparse_kind=splade for both sides): heterogeneous ensemble distillation of the same dense + BM25
teacher on pseudo-queries (lexical.* options; lexical.negatives defaults to 1 there), plus an
IDF-aware FLOPS regulariser (flops.document, flops.query, flops.warmup_ratio, flops.idf_aware;
see `pretriever train --help`).

The result is a plain sentence-transformers folder (a sparse one with --kind sparse): give it to
`pretriever train --model`, to `pretriever evaluate --model` or to any index. Checkpoints go
to OUT.work: rerun the same command after a kill to resume. Evaluate the result against the
model you started from before adopting it: on some corpora pre-training does not help."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pretrain", help="zero-label pre-training on a corpus", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever pretrain --dataset scifact --out models/sf-pre\n"
        "  pretriever evaluate --dataset scifact --retriever dense --model models/sf-pre\n"
        "  pretriever pretrain --dataset my-corpus/ --set lexical.weight=2 --out models/mine-pre\n"
        "  pretriever pretrain --dataset scifact --tasks ict,cropping --set cropping.queue=4096 "
        "--out models/sf-ict-crop\n"
        "  pretriever train --dataset scifact --model models/sf-pre --out models/sf-pre-ft\n"
        "  pretriever pretrain --kind sparse --dataset scifact --out models/sf-sparse-pre\n"
        "  pretriever index sparse --dataset scifact --model models/sf-sparse-pre --out indexes/sf-sparse",
    )
    add_dataset_args(parser, required=False, only_corpus=True)
    add_output_args(parser, "model folder to create", required=False)
    add_model_arg(parser, "model to start from: a sentence-transformers folder or 'minilm' (default)",
                  default=None, trained_from=True)
    parser.add_argument("--kind", choices=["dense", "sparse"], default="dense",
                        help="dense (default): a bi-encoder; sparse: a learned sparse encoder distilled from "
                        "the lexical task's teacher (see above)")
    parser.add_argument("--tasks", help="comma-separated task names (default lexical)")
    parser.add_argument("--epochs", type=int, help="passes over the examples (default 1)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 2e-5; 5e-5 with --kind sparse)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    parser.add_argument("--max-length", type=int, help="document tokens (default 128)")
    parser.add_argument("--max-examples", type=int, help="examples per task and epoch (default 2048)")
    parser.add_argument("--seed", type=int, help="seed of sampling, masking and initialisation (default 42)")
    parser.add_argument("--idf-pooling", type=float, nargs="?", const=1.0, metavar="POWER",
                        help="weigh each token of the mean pooling by its IDF in this corpus, to POWER "
                        "(default 1 when given; off by default: +0.008 on NFCorpus's keyword queries, "
                        "a loss on SciFact's claims); the weights are saved in the model folder")
    parser.add_argument("--grad-cache", type=int, metavar="CHUNK",
                        help="embed a batch CHUNK texts at a time (GradCache: the same gradient in a "
                        "chunk's memory); default: chosen from a memory estimate, 0 turns it off")
    add_training_precision(parser)
    add_config_args(parser, "lexical.weight=2, cropping.queue=4096, loop.warmup_ratio=0.05")
    add_quiet_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.training.config import build_config

    if args.kind == "sparse":
        return run_sparse(args)
    from pretriever.training.pretrain.pretrainer import PretrainConfig, examples_summary, pretrain

    config = build_config(
        PretrainConfig, args.config, sets=args.sets, dataset=args.dataset, out=args.out, tasks=args.tasks,
        base=args.model, batch_size=args.batch_size, max_length=args.max_length,
        max_examples=args.max_examples, idf_pooling=args.idf_pooling, precision=args.precision,
        grad_cache=args.grad_cache, lenient=args.lenient,
        **{"loop.epochs": args.epochs, "loop.lr": args.lr, "loop.seed": args.seed},
    )
    report = pretrain(config, progress=show_progress(args), overwrite=args.overwrite, log=info)
    loop = report.loop
    print(f"pre-trained on {report.counts['documents']:,} documents ({examples_summary(report)} "
          "examples/epoch, "
          f"{loop.steps} steps, {loop.examples_per_second:.1f} examples/s, final loss "
          f"{loop.losses[-1]:.4f}) -> {report.folder}")
    return 0


def run_sparse(args: argparse.Namespace) -> int:
    from pretriever.errors import ConfigError
    from pretriever.training.config import build_config
    from pretriever.training.sparse import SparsePretrainConfig, train_sparse

    refused = [flag for flag, value in (("--tasks", args.tasks), ("--idf-pooling", args.idf_pooling),
                                        ("--grad-cache", args.grad_cache)) if value is not None]
    if refused:
        raise ConfigError(f"{', '.join(refused)} apply to dense pre-training; --kind sparse runs the "
                          "lexical teacher's distillation (set its options with --set lexical.KEY=VALUE)")
    config = build_config(
        SparsePretrainConfig, args.config, sets=args.sets, dataset=args.dataset, out=args.out,
        base=args.model, batch_size=args.batch_size, max_length=args.max_length,
        max_examples=args.max_examples, precision=args.precision, lenient=args.lenient,
        **{"loop.epochs": args.epochs, "loop.lr": args.lr, "loop.seed": args.seed},
    )
    report = train_sparse(config, progress=show_progress(args), overwrite=args.overwrite, log=info)
    loop = report.loop
    print(f"pre-trained a sparse encoder on {report.counts['documents']:,} documents "
          f"({report.counts['examples_per_epoch']:,} examples/epoch, {loop.steps} steps, "
          f"{loop.examples_per_second:.1f} examples/s, final loss {loop.losses[-1]:.4f}) -> {report.folder}")
    return 0
