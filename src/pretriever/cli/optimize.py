"""``pretriever optimize MODEL --dataset D``: a fast OpenVINO copy of an encoder or reranker,
quality-checked."""

from __future__ import annotations

import argparse

from pretriever.cli._common import (
    add_dataset_args,
    add_model_arg,
    add_quiet_arg,
    dataset_from,
    precision_name,
    show_progress,
)

DESCRIPTION = """\
Convert a sentence-transformers model folder (a bi-encoder or a reranker) to OpenVINO and
store it in the folder's openvino/ subfolder (the folder still loads unchanged in
sentence-transformers). int8 is statically quantised with NNCF, calibrated on a sample of
the dataset's own documents; bf16 stores the converted model for OpenVINO's bf16 mode.
A separate sample is then run through both models; below a mean cosine of 0.995 to fp32
the result is refused (lower --min-quality to keep it anyway). For a reranker, pseudo-queries
(a document's first words) are paired with documents, and the check is the correlation of
scores with fp32. Models with backend/precision 'auto' use a stored int8 model from then on."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "optimize", help="store a fast OpenVINO bf16/int8 version of an encoder", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  pretriever optimize --model minilm --dataset scifact --out models/minilm-int8\n"
        "  pretriever index dense --dataset scifact --model models/minilm-int8 --out indexes/sf-int8\n"
        "  pretriever optimize --model models/my-trained-model --dataset nfcorpus --precision bfloat16",
    )
    add_model_arg(parser, "a bi-encoder or reranker folder, or 'minilm' (the bundled model; needs --out)",
                  default=None)
    add_dataset_args(parser)
    parser.add_argument("--precision", default="int8", type=precision_name, choices=["int8", "bfloat16"],
                        help="int8 (static quantisation, default) or bfloat16")
    parser.add_argument("--out", "-o", metavar="DIR",
                        help="write a copy of the model folder here instead of adding openvino/ to MODEL")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out, or the openvino/ model MODEL already holds")
    parser.add_argument("--calibration", type=int, default=300,
                        help="corpus documents used to calibrate int8 (default 300)")
    parser.add_argument("--check", type=int, default=200,
                        help="other corpus documents used for the quality check (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document samples")
    parser.add_argument("--min-quality", type=float, default=0.995,
                        help="refuse below this agreement with fp32: mean cosine of vectors for an "
                        "encoder, correlation of scores for a reranker (default 0.995)")
    add_quiet_arg(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pretriever.errors import ConfigError
    from pretriever.optimize import optimize

    if not args.model:
        raise ConfigError("give the model to optimise: --model DIR (or --model minilm --out DIR)")
    dataset = dataset_from(args)
    report = optimize(args.model, dataset.corpus, precision=args.precision, out=args.out,
                      calibration=args.calibration, check=args.check, seed=args.seed,
                      min_quality=args.min_quality, corpus_name=dataset.name, overwrite=args.overwrite,
                      progress=show_progress(args))
    print(f"{report.precision} OpenVINO model -> {report.folder}/openvino "
          f"(calibrated on {report.calibration_docs} documents of {dataset.name}; on "
          f"{report.check_docs} others: {report.measure} to fp32 {report.quality:.5f}, "
          f"worst {report.worst:.5f})")
    return 0
