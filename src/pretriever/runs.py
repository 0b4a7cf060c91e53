"""Runs: ranked results per query, in memory as dict-of-dict and on disk as TREC run files.

A run is always ranked as trec_eval ranks a run file: by score, highest first, and equal scores by
document id in reverse order (trec_eval's tie rule; ir_measures and pytrec_eval share it). So the
same scores give the same ranking everywhere (files, evaluation, printed results) whatever the
insertion order, and a run saved with ``write_run`` scores the same in trec_eval as in pretriever:
the file holds every score at full precision (rounding would turn near-ties into ties that trec_eval
then breaks its own way).
"""

from __future__ import annotations

import math
from pathlib import Path

from pretriever._io import LineReader, atomic_file
from pretriever.errors import DataFormatError
from pretriever.types import Hit, Run


def ranked_items(scores: dict[str, float], k: int | None = None) -> list[tuple[str, float]]:
    """One query's (doc id, score) pairs in rank order (score descending, ties by doc id
    descending, as trec_eval), cut at ``k``."""
    order = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return order if k is None else order[:k]


def ranked(scores: dict[str, float], k: int | None = None) -> list[Hit]:
    """One query's results as hits in rank order (see ``ranked_items``), cut at ``k``."""
    return [Hit(rank, doc_id, score) for rank, (doc_id, score) in enumerate(ranked_items(scores, k), start=1)]


def sort_run(run: Run, k: int | None = None) -> Run:
    """A copy of ``run`` whose inner dicts iterate in rank order, optionally cut at ``k``."""
    return {qid: {h.doc_id: h.score for h in ranked(scores, k)} for qid, scores in run.items()}


def write_run(path: str | Path, run: Run, name: str = "pretriever", k: int | None = None) -> Path:
    """Write a TREC run file (``qid Q0 docid rank score name``) atomically, scores at full
    precision (the shortest text that reads back as the same float)."""
    path = Path(path)
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"run name {name!r} must be non-empty and contain no whitespace")
    with atomic_file(path) as handle:
        for qid, scores in run.items():
            for hit in ranked(scores, k):
                handle.write(f"{qid} Q0 {hit.doc_id} {hit.rank} {float(hit.score)!r} {name}\n")
    return path


def read_run(path: str | Path) -> tuple[Run, str]:
    """Read a TREC run file; return the run and its name (the 6th column).

    Errors name the line for a wrong column count, a non-numeric score or a document listed
    twice for the same query.
    """
    reader = LineReader(path)
    run: Run = {}
    names: set[str] = set()
    for number, text in reader:
        if not text.strip():
            continue
        cells = text.split()
        if len(cells) != 6:
            raise DataFormatError(
                reader.path, number, f"expected 6 columns (qid Q0 docid rank score name), found "
                f"{len(cells)}", "this is not a TREC run file",
            )
        qid, _, doc_id, _, score_text, name = cells
        try:
            score = float(score_text)
        except ValueError:
            raise DataFormatError(reader.path, number, f"score '{score_text}' is not a number") from None
        if not math.isfinite(score):
            raise DataFormatError(reader.path, number, f"score '{score_text}' is not finite",
                                  "scores must be real numbers")
        scores = run.setdefault(qid, {})
        if doc_id in scores:
            raise DataFormatError(
                reader.path, number, f"document '{doc_id}' appears twice for query '{qid}'",
                "each (query, document) pair must appear once",
            )
        scores[doc_id] = score
        names.add(name)
    if not run:
        raise DataFormatError(reader.path, None, "the run file is empty")
    return run, sorted(names)[0] if len(names) == 1 else "+".join(sorted(names))
