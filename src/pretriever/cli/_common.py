"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_dataset_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--dataset", "-d", required=required, metavar="DATASET",
        help="a BEIR folder path, or a dataset name under $PRETRIEVER_DATA (e.g. scifact)",
    )
    parser.add_argument(
        "--lenient", action="store_true",
        help="drop qrels rows that point at unknown queries/documents (with a warning) "
        "instead of failing",
    )


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "torch", "openvino"],
        help="inference backend for dense encoding (default auto: OpenVINO bf16/int8 on a CPU that "
        "supports it, torch otherwise)",
    )
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16", "int8"],
        help="numeric precision (default auto; int8 needs `pretriever optimize` first)",
    )


def fresh_output(path: str, overwrite: bool) -> Path:
    """The output folder, refused up front if it exists (before minutes of encoding)."""
    from pretriever.errors import PretrieverError

    out = Path(path)
    if out.exists() and not overwrite:
        raise PretrieverError(f"{out} already exists; choose another folder or pass --overwrite")
    return out


def work_folder(out: Path, given: str | None = None) -> Path:
    """Where a resumable encoding keeps its chunks: ``given``, or ``OUT.work`` beside the output."""
    return Path(given) if given else out.with_name(out.name + ".work")


def show_progress() -> bool:
    """Progress bars only on an interactive terminal, so logs stay readable."""
    return sys.stderr.isatty()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def warn(message: str) -> None:
    print(f"pretriever: warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    """A status line on stderr (long jobs in logs, where no progress bar is drawn)."""
    print(f"pretriever: {message}", file=sys.stderr, flush=True)
