"""Relevance judgements: BEIR TSV (``query-id corpus-id score``) and TREC qrels (``qid 0 docid rel``)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path

from pretriever._io import LineReader
from pretriever.errors import DataFormatError
from pretriever.types import Qrels


@dataclass
class QrelsReport:
    """What reading a qrels file found besides the judgements themselves."""

    rows: int = 0
    duplicate_rows: int = 0
    unknown_queries: int = 0
    unknown_documents: int = 0
    dropped_rows: int = 0
    examples: list[str] = field(default_factory=list)

    def warnings(self, path: Path) -> list[str]:
        """Human-readable warnings for lenient mode (empty when nothing was dropped)."""
        if not self.dropped_rows:
            return []
        text = (
            f"{path}: dropped {self.dropped_rows} qrels row(s): {self.unknown_queries} with an "
            f"unknown query id, {self.unknown_documents} with an unknown document id"
        )
        if self.examples:
            text += " (e.g. " + "; ".join(self.examples[:3]) + ")"
        return [text]


_HEADER_FIRST = {"query-id", "query_id", "qid", "query", "topic"}
_HEADER_LAST = {"score", "rel", "relevance", "label", "grade"}


def _is_header(cells: list[str]) -> bool:
    """A header names its columns ("query-id ... score"); a bad first data row is not skipped."""
    return cells[0].strip().lower() in _HEADER_FIRST or cells[-1].strip().lower() in _HEADER_LAST


def _parse_grade(path: Path, number: int, cell: str) -> int:
    try:
        value = float(cell)
    except ValueError:
        raise DataFormatError(
            path, number, f"relevance '{cell}' is not a number", "the last column must be an integer grade"
        ) from None
    if not value.is_integer():
        raise DataFormatError(path, number, f"relevance '{cell}' is not an integer grade")
    return int(value)


def read_qrels(
    path: str | Path,
    *,
    queries: Container[str] | None = None,
    documents: Container[str] | None = None,
    lenient: bool = False,
) -> tuple[Qrels, QrelsReport]:
    """Read a qrels file, checking each row against known query and document ids.

    A row whose query or document is unknown is an error naming its line; with ``lenient`` it is
    dropped and counted in the report instead. Identical duplicate rows are counted; conflicting
    grades for the same pair are an error.
    """
    path = Path(path)
    reader = LineReader(path)
    qrels: Qrels = {}
    report = QrelsReport()
    width: int | None = None
    for number, text in reader:
        if not text.strip():
            continue
        cells = text.split("\t") if "\t" in text else text.split()
        if width is None:
            width = len(cells)
            if width not in (3, 4):
                raise DataFormatError(
                    path, number, f"expected 3 columns (query-id, corpus-id, score) or 4 (TREC: "
                    f"qid iter docid rel), found {width}",
                )
            if _is_header(cells):
                continue
        if len(cells) != width:
            raise DataFormatError(
                path, number, f"expected {width} columns like the first row, found {len(cells)}"
            )
        query_id, doc_id = cells[0].strip(), cells[-2].strip()
        grade = _parse_grade(path, number, cells[-1].strip())
        report.rows += 1
        unknown_q = queries is not None and query_id not in queries
        unknown_d = documents is not None and doc_id not in documents
        if unknown_q or unknown_d:
            what = f"query id '{query_id}'" if unknown_q else f"document id '{doc_id}'"
            if not lenient:
                source = "queries file" if unknown_q else "corpus"
                raise DataFormatError(
                    path, number, f"{what} is not in the {source}",
                    "fix the ids, or pass --lenient (lenient=True) to drop such rows with a warning",
                )
            report.unknown_queries += unknown_q
            report.unknown_documents += unknown_d
            report.dropped_rows += 1
            if len(report.examples) < 3:
                report.examples.append(f"line {number}: {what}")
            continue
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            if judged[doc_id] != grade:
                raise DataFormatError(
                    path, number, f"conflicting grades for ({query_id}, {doc_id}): "
                    f"{judged[doc_id]} and {grade}", "keep one judgement per pair",
                )
            report.duplicate_rows += 1
        judged[doc_id] = grade
    return qrels, report
