"""``pretriever pretrain``: zero-label pre-training of a bi-encoder on a corpus."""

from __future__ import annotations

import argparse

from pretriever.cli._common import info, show_progress

DESCRIPTION = """\
Adapt a bi-encoder to a corpus with self-supervised tasks built from the corpus alone: no
queries and no relevance labels are read. Tasks (comma-separated in --tasks; with several,
each batch holds one task's examples):
  ict       Inverse Cloze Task: a sentence -> its passage, the sentence removed 90% of the time
  bfs       Body First Selection: the title (else first sentence) -> a random body passage
  cropping  Contriever: two random spans of a document (optional MoCo queue: --crop-queue)
  lexical   Spar-style distillation: a title or sentence -> the margins that the starting model
            plus BM25 give its candidates (learns the lexical matching BM25 adds)
  prop      PROP representative words: the likelier of two sampled word sets scores higher, + MLM
  retromae  RetroMAE: masked auto-encoding through a one-layer decoder fed by the embedding
  dupmae    retromae + DupMAE's bag-of-words head
The result is a plain sentence-transformers folder: give it to `pretriever train --base`, to
`pretriever evaluate --model` or to any index. Checkpoints go to OUT.work: rerun the same command
after a kill to resume. A --config file (TOML/YAML/JSON) can hold every setting."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pretrain", help="zero-label pre-training on a corpus", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever pretrain --dataset scifact --tasks bfs --out models/sf-bfs\n"
        "  pretriever pretrain --dataset my-corpus/ --tasks ict,cropping --max-examples 4000 "
        "--out models/ict-crop\n"
        "  pretriever evaluate --dataset scifact --retriever dense --model models/sf-bfs\n"
        "  pretriever train --dataset scifact --base models/sf-bfs --out models/sf-bfs-ft",
    )
    parser.add_argument("--dataset", "-d", help="a BEIR folder or a name under $PRETRIEVER_DATA "
                        "(only its corpus is read)")
    parser.add_argument("--tasks", help="comma-separated: ict, bfs, cropping, lexical, prop, retromae, "
                        "dupmae (default ict)")
    parser.add_argument("--out", "-o", metavar="DIR", help="model folder to create")
    parser.add_argument("--config", metavar="FILE", help="settings file (.toml, .yaml or .json)")
    parser.add_argument("--base", help="model to start from (default minilm)")
    parser.add_argument("--epochs", type=int, help="passes over the corpus (default 1)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 1e-5)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    parser.add_argument("--max-length", type=int, help="document tokens (default 128)")
    parser.add_argument("--max-examples", type=int, help="at most this many examples per task and epoch")
    parser.add_argument("--seed", type=int, help="seed of sampling, masking and initialisation (default 42)")
    parser.add_argument("--crop-queue", type=int, help="cropping: MoCo queue of this many keys (default 0: "
                        "in-batch negatives only)")
    parser.add_argument("--lexical-weight", type=float, help="lexical: BM25's weight in the teacher, in "
                        "units of 1/temperature of cosine (default 2: BM25's best candidate gains 0.1 "
                        "cosine; 5 cost 0.025 nDCG@10 on SciFact)")
    parser.add_argument("--lexical-negatives", type=int, help="lexical: candidates scored against the "
                        "teacher's best one per pseudo-query (default 7: on SciFact, 1,024 examples "
                        "of 7 gained 0.009 nDCG@10, 2,048 pairs 0.004)")
    parser.add_argument("--lexical-drop-source", action="store_true", default=None,
                        help="lexical: leave the document a pseudo-query was drawn from out of its "
                        "candidates")
    parser.add_argument("--lexical-queries", help="lexical: pseudo-query kinds, comma-separated among title, "
                        "sentence, keywords (1-3 content words of the title), topic (such words that at "
                        "least 5 documents and at most 5%% of them share, and the document repeats, e.g. "
                        "'irritable bowel'); default title,sentence")
    parser.add_argument("--lexical-teacher", choices=["start", "base"],
                        help="lexical: the teacher's dense part: start (default: the model training starts "
                        "from, IDF-pooled with --idf-pooling) or base (the --base model as given)")
    parser.add_argument("--lexical-teacher-length", type=int, metavar="N",
                        help="lexical: document tokens the teacher's dense part reads (default: "
                        "--max-length, so that the student starts out agreeing with it)")
    parser.add_argument("--lexical-inbatch", type=float, metavar="WEIGHT",
                        help="lexical: add in-batch distillation at this weight: the student also matches "
                        "the teacher's scores of every other document of the batch (default 0: off; 4 with "
                        "--lexical-topic-batches: same speed, SciFact train +0.010 against +0.008 without, "
                        "NFCorpus train +0.0097 either way)")
    parser.add_argument("--lexical-topic-batches", action="store_true", default=None,
                        help="lexical: cluster the pseudo-queries (k-means on the teacher's vectors) and "
                        "fill each batch from one cluster, so in-batch documents are near misses (TAS)")
    parser.add_argument("--lexical-extra-queries", type=int, metavar="N",
                        help="lexical: N more keyword queries per document (1-3 content words from anywhere "
                        "in it), taught by in-batch distillation alone; needs --lexical-inbatch (default 0; "
                        "2 changed nothing on NFCorpus)")
    parser.add_argument("--lexical-feedback", type=int, metavar="K",
                        help="lexical: Rocchio pseudo-relevance feedback in the teacher: each pseudo-query's "
                        "vector moves towards the mean of the teacher's top K documents before its "
                        "candidates are scored (default 0: off; K = 3 lifts the teacher by 0.012 nDCG@10 "
                        "on real NFCorpus queries, but its student gained no more there and lost 0.012 "
                        "on SciFact train)")
    parser.add_argument("--lexical-feedback-weight", type=float, metavar="BETA",
                        help="lexical: the weight of that mean vector (default 1)")
    parser.add_argument("--idf-pooling", type=float, nargs="?", const=1.0, metavar="POWER",
                        help="weigh each token of the mean pooling by its IDF in this corpus (divided by "
                        "the mean IDF, to POWER, default 1), so rare terms count more, in the trained model "
                        "and (unless --lexical-teacher base) in the teacher; the weights are saved in the "
                        "model folder (sentence-transformers' WordWeights). Default: off. With lexical at "
                        "power 0.5, nDCG@10 over the off-the-shelf model went from +0.006 to +0.009 on "
                        "NFCorpus (keyword queries) and from +0.017 to +0.001 on SciFact (claims)")
    parser.add_argument("--grad-cache", type=int, metavar="CHUNK",
                        help="ict, bfs, cropping, lexical: embed a batch CHUNK texts at a time (GradCache), "
                        "so memory stays that of a chunk (same gradient, about 1.3x the compute; default 0: "
                        "off). lexical embeds 8 documents per example: at --max-length 256 a batch of 32 "
                        "ran out of 24 GB without it, and pretrain warns when a step looks too big. prop "
                        "and the MAE tasks keep their whole batch; refused when no task given uses it")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                        help="training precision (default auto: bf16 autocast where native)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.training.config import build_config
    from pretriever.training.pretrain.trainer import PretrainConfig, examples_summary, pretrain

    config = build_config(
        PretrainConfig, args.config, dataset=args.dataset, out=args.out, tasks=args.tasks, base=args.base,
        batch_size=args.batch_size, max_length=args.max_length, max_examples=args.max_examples,
        crop_queue=args.crop_queue, lexical_weight=args.lexical_weight,
        lexical_negatives=args.lexical_negatives,
        lexical_drop_source=args.lexical_drop_source,
        lexical_queries=args.lexical_queries, lexical_teacher=args.lexical_teacher,
        lexical_teacher_length=args.lexical_teacher_length, lexical_inbatch=args.lexical_inbatch,
        lexical_topic_batches=args.lexical_topic_batches, lexical_extra_queries=args.lexical_extra_queries,
        lexical_feedback=args.lexical_feedback, lexical_feedback_weight=args.lexical_feedback_weight,
        idf_pooling=args.idf_pooling,
        precision=args.precision, grad_cache=args.grad_cache,
        **{"loop.epochs": args.epochs, "loop.lr": args.lr, "loop.seed": args.seed},
    )
    report = pretrain(config, progress=show_progress(), overwrite=args.overwrite, log=info)
    loop = report.loop
    print(f"pre-trained on {report.documents} documents ({examples_summary(report)} examples/epoch, "
          f"{loop.steps} steps, {loop.examples_per_second:.1f} examples/s, final loss "
          f"{loop.losses[-1]:.4f}) -> {report.folder}")
    return 0
