"""Shared pieces of the benchmark scripts: machine description, exact command, atomic append."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
HEADER = """# Benchmark results

Each script in `benchmarks/` appends one dated section to this file per run (unless run with
`--no-append`). A section names the machine (CPU model, cores available to the process, load at
start), the Python and library versions and the exact command, so that numbers taken on
different machines or library versions are not compared by accident. Sections are not edited
afterwards: rerun the command to get fresh numbers.
"""
os.environ.setdefault("PRETRIEVER_DATA", str(REPO.parent / "shared" / "datasets"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def command() -> str:
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def machine_line(libraries: tuple[str, ...]) -> str:
    info = Path("/proc/cpuinfo")
    flags = info.read_text(errors="replace").split() if info.exists() else []
    isa = ", ".join(f for f in ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags)
    load = os.getloadavg()
    versions = ", ".join(f"{lib} {version(lib)}" for lib in libraries)
    return (f"- Machine: {cpu_model()} ({isa or 'no AVX-512 VNNI/BF16'}), {cores()} cores available, "
            f"load average {load[0]:.2f} at start; Python {platform.python_version()}; {versions}\n"
            f"- Command: `{command()}`")


def append_results(section: str) -> None:
    """Append ``section`` to RESULTS.md atomically (temp file beside it, then rename)."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    text = current.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".RESULTS.md.", dir=RESULTS.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, RESULTS)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def selection_split(dataset: Any) -> str:
    """The split a setting may be chosen on: dev where the dataset has one, else train (SciFact)."""
    return "dev" if "dev" in dataset.splits else "train"


def delta_rows(dataset: str, selection: str, results: dict[str, tuple[Any, Any]], baseline: str) -> list[str]:
    """Rows of a "selection split / test / Δ test (p)" table, one per setting of ``results``
    (label -> its selection-split and test ``Evaluation``); Δ and p on test are against
    ``baseline`` (paired randomization test)."""
    from pretriever.evaluation import compare

    rows = []
    for label, (sel, test) in results.items():
        cmp = None if label == baseline else compare([results[baseline][1], test], "nDCG@10")[0]
        rows.append(f"| {dataset} | {label} | {selection} {sel.metrics['nDCG@10']:.4f} | "
                    f"{test.metrics['nDCG@10']:.4f} | "
                    + (f"{cmp.delta:+.4f} (p={cmp.p_value:.3f}) |" if cmp else " |"))
    return rows


def delta_section(title: str, libraries: tuple[str, ...], intro: str, setting: str, rows: list[str]) -> str:
    """A dated RESULTS.md section holding a table of ``delta_rows`` (``setting``: its second column)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"## {title} ({stamp})", "", machine_line(libraries), "", intro, "",
        f"| dataset | {setting} | selection split nDCG@10 | test nDCG@10 | Δ test (p) |",
        "|---|---|---:|---:|---:|", *rows, ""])


def split_evaluations(dataset: Any, encoder: Any, splits: list[str], metrics: list[str],
                      name: str = "run") -> list[Any]:
    """The ``Evaluation`` of ``encoder`` (dense, top 100) on each of ``splits``, from one encoding of
    the corpus (``dev_scorer`` refuses the test split by design, and would encode once per split)."""
    from pretriever.evaluation.measures import evaluate
    from pretriever.indexes.dense import FlatIndex

    with tempfile.TemporaryDirectory(prefix="bench-index-") as work:
        index = FlatIndex(encoder, progress=False, work_dir=work).build(dataset.corpus)
        return [evaluate(dataset.qrels(split), index.search(dataset.split_queries(split), k=100), metrics,
                         name=f"{name}-{split}")
                for split in splits]
