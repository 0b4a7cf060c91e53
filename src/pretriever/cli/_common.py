"""The options every subcommand shares, each spelled and meant one way (README: "Command line").

    --dataset / -d DATASET   a BEIR folder, or a name under $PRETRIEVER_DATA
    --lenient                drop qrels rows that point at unknown queries or documents
    --model / -m MODEL       the model a command encodes with, indexes or trains from (``--base`` too)
    --reranker DIR           a cross-encoder stage
    --first-stage SPEC       the candidates a later stage reads: bm25 | dense | hybrid | INDEX_DIR | RUN_FILE
    --depth N                how many candidates per query that stage reads from the first stage
    -k N                     how many results a search returns per query
    --precision P            auto | float32 | bfloat16 | float16 | int8 (bf16, fp32, fp16 accepted)
    --out / -o PATH, --overwrite, --quiet / -q, --config FILE, --set KEY=VALUE
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
TRAINING_PRECISIONS = ("auto", "float32", "bfloat16")
_PRECISION_ALIASES = {"fp32": "float32", "f32": "float32", "bf16": "bfloat16", "fp16": "float16",
                      "f16": "float16", "half": "float16"}
FIRST_STAGE_HELP = "bm25 | dense | hybrid | INDEX_DIR | RUN_FILE"


def precision_name(text: str) -> str:
    """The one spelling of a precision (``bf16`` -> ``bfloat16``), for argparse's ``type``."""
    return _PRECISION_ALIASES.get(text.lower(), text.lower())


def add_dataset_args(parser: argparse.ArgumentParser, *, required: bool = True,
                     only_corpus: bool = False) -> None:
    what = " (only its corpus is read)" if only_corpus else ""
    parser.add_argument("--dataset", "-d", required=required, metavar="DATASET",
                        help="a BEIR folder path, or a dataset name under $PRETRIEVER_DATA (e.g. "
                        f"scifact){what}")
    parser.add_argument("--lenient", action="store_true", default=None,
                        help="drop qrels rows that point at unknown queries/documents (with a warning) "
                        "instead of failing")


def add_model_arg(parser: argparse.ArgumentParser, helptext: str, *, default: str | None = "minilm",
                  trained_from: bool = False) -> None:
    """``--model`` / ``-m``; a trainer also takes ``--base`` for the model it starts from."""
    names = ["--model", "-m", "--base"] if trained_from else ["--model", "-m"]
    parser.add_argument(*names, dest="model", default=default, metavar="MODEL", help=helptext)


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino"],
                        help="inference backend (default auto: OpenVINO bf16/int8 on a CPU that supports it, "
                        "torch otherwise)")
    parser.add_argument("--precision", default="auto", type=precision_name, choices=INFERENCE_PRECISIONS,
                        help="numeric precision of inference (default auto; int8 needs `pretriever optimize` "
                        "first)")


def add_training_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", type=precision_name, choices=TRAINING_PRECISIONS,
                        help="training precision (default auto: bf16 autocast where the hardware has it)")


def add_first_stage_arg(parser: argparse.ArgumentParser, helptext: str, *, required: bool = False,
                        default: str | None = None) -> None:
    parser.add_argument("--first-stage", required=required, default=default, metavar="SPEC",
                        help=f"{FIRST_STAGE_HELP}: {helptext}")


def add_depth_arg(parser: argparse.ArgumentParser, helptext: str, default: int | None = None) -> None:
    parser.add_argument("--depth", type=int, default=default, metavar="N",
                        help=f"first-stage candidates read per query: {helptext}")


def add_output_args(parser: argparse.ArgumentParser, what: str, *, required: bool = True) -> None:
    parser.add_argument("--out", "-o", required=required, metavar="PATH", help=what)
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")


def add_texts_corpus_arg(parser: argparse.ArgumentParser) -> None:
    """``--corpus``: where the documents' texts are, for an index that does not keep them."""
    parser.add_argument("--corpus", metavar="CORPUS",
                        help="the corpus the index was built from (a BEIR folder, corpus.jsonl or dataset "
                        "name), for document texts when neither the index folder nor the corpus its "
                        "manifest names has them")


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars or progress lines (warnings and results still print)")


def add_config_args(parser: argparse.ArgumentParser, examples: str) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (.toml, .yaml or .json); flags override it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help=f"set any setting, dotted for nested ones ({examples}); repeatable; "
                        "overrides the file and the flags")


def dataset_from(args: argparse.Namespace, name: str | None = None) -> Any:
    """The dataset ``--dataset`` (or ``name``) names, read as ``--lenient`` and ``--quiet`` say."""
    from pretriever.data.dataset import load_dataset

    return load_dataset(name or args.dataset, lenient=bool(args.lenient), progress=show_progress(args))


def show_progress(args: argparse.Namespace) -> bool:
    """Progress output unless --quiet: a bar on a terminal, a line per 10% in a log."""
    return not getattr(args, "quiet", False)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def warn(message: str) -> None:
    print(f"pretriever: warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    """A message on stderr that --quiet does not silence (warnings, a resumed run)."""
    print(f"pretriever: {message}", file=sys.stderr, flush=True)
