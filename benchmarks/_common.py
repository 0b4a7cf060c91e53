"""Shared pieces of the benchmark scripts: machine description, exact command, and writing a script's
section of RESULTS.md (replaced in place, atomically)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
HEADER = """# Benchmark results

The current number of each benchmark and effectiveness table, newest first. A script in
`benchmarks/` replaces its own section (matched on the heading without its date) and puts it first;
`--no-append` leaves the file alone. Each section names the machine, the library versions and the
exact command. Superseded runs and their readings are in `git log -p benchmarks/RESULTS.md`.
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


_SECTION = "## "
# a heading's trailing date: " (2026-11-25 14:35 UTC)", " (2026-11-25 to 2026-11-27)"
_DATE_SUFFIX = re.compile(r"\s+\(\d{4}-\d{2}-\d{2}[^()]*\)\s*$")


def section_name(heading: str) -> str:
    """The benchmark's name in a ``## `` heading line: its text without a trailing ``(date...)``."""
    return _DATE_SUFFIX.sub("", heading[len(_SECTION):].strip())


def _split_sections(text: str) -> tuple[str, list[str]]:
    """(the header before the first ``## `` line, the sections, each from its ``## `` line to the next)."""
    header: list[str] = []
    sections: list[list[str]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith(_SECTION) and not fenced:
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            header.append(line)
    return "\n".join(header).strip("\n"), ["\n".join(lines).strip("\n") for lines in sections]


def record_section(section: str) -> None:
    """Write ``section`` into RESULTS.md atomically (temp file beside it, then rename).

    The section goes first, right after the header (newest first), and every earlier section of the
    same name (its ``## `` heading without the trailing date) is dropped: the file holds the current
    number of each benchmark, the history is in git."""
    section = section.strip("\n")
    if not section.startswith(_SECTION):
        raise ValueError(f"a RESULTS.md section starts with a '{_SECTION}' heading, got {section[:40]!r}")
    name = section_name(section.splitlines()[0])
    header, sections = _split_sections(RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER)
    sections = [section, *(s for s in sections if section_name(s.splitlines()[0]) != name)]
    text = "\n\n".join([header or HEADER.strip("\n"), *sections]) + "\n"
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
