"""Malformed input: every bad file fails with its path and line, and nothing is left half-written.

Each test starts from one valid tiny BEIR folder (``make_beir``) and corrupts exactly one thing,
so a failure points at one check. The same cases run through the Python API and, for a few, the
CLI, whose contract is exit code 1 and ``pretriever: error: <file>:<line>: ...`` on the first
line of stderr.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pretriever.cli import main
from pretriever.data import load_dataset, read_corpus, read_qrels, read_queries
from pretriever.errors import DataFormatError, DataNotFoundError, PretrieverError
from pretriever.indexes.bm25 import BM25Index
from pretriever.runs import read_run

# -- a valid tiny BEIR folder, and ways to corrupt one line of it ----------------------------------

DOCS: list[dict[str, Any]] = [
    {"_id": "d1", "title": "Solar power", "text": "Photovoltaic panels turn sunlight into power."},
    {"_id": "d2", "title": "Wind power", "text": "Turbines turn the energy of wind into power."},
    {"_id": "d3", "title": "Bread", "text": "Flour, water, salt and yeast make bread."},
    {"_id": "d4", "title": "Sourdough", "text": "A sourdough starter leavens bread without yeast."},
    {"_id": "d5", "title": "", "text": "Hydroelectric dams generate power from water."},
]
QUERIES: list[dict[str, Any]] = [
    {"_id": "q1", "text": "how do solar panels make power"},
    {"_id": "q2", "text": "bread without yeast"},
    {"_id": "q3", "text": "wind energy"},
]
# qrels/test.tsv: line 1 is the header, these rows are lines 2..5.
QRELS: list[tuple[str, str, int]] = [("q1", "d1", 2), ("q1", "d5", 1), ("q2", "d4", 1), ("q3", "d2", 0)]
EXPECTED_QRELS = {"q1": {"d1": 2, "d5": 1}, "q2": {"d4": 1}, "q3": {"d2": 0}}

BOM = b"\xef\xbb\xbf"
QRELS_HEADER = b"query-id\tcorpus-id\tscore"


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    """One JSON object a line, each line ending with a newline."""
    return b"".join(json.dumps(row).encode("utf-8") + b"\n" for row in rows)


def qrels_tsv(rows: list[tuple[str, str, int]]) -> bytes:
    """BEIR qrels with its header; row i of ``rows`` is line i + 2."""
    return b"\n".join([QRELS_HEADER, *(f"{q}\t{d}\t{s}".encode() for q, d, s in rows)]) + b"\n"


def replace_line(data: bytes, number: int, raw: bytes) -> bytes:
    """``data`` with its 1-based line ``number`` replaced by ``raw`` (no newline in ``raw``)."""
    lines = data.split(b"\n")
    lines[number - 1] = raw
    return b"\n".join(lines)


def append_line(data: bytes, raw: bytes) -> bytes:
    """``data`` (ending with a newline) with one more line."""
    return data + raw + b"\n"


def make_beir(
    folder: Path,
    *,
    corpus: bytes | None = None,
    queries: bytes | None = None,
    qrels: bytes | None = None,
) -> Path:
    """Write a valid BEIR folder; any file given as raw bytes replaces the valid one."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_bytes(jsonl(DOCS) if corpus is None else corpus)
    (folder / "queries.jsonl").write_bytes(jsonl(QUERIES) if queries is None else queries)
    (folder / "qrels" / "test.tsv").write_bytes(qrels_tsv(QRELS) if qrels is None else qrels)
    return folder


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_cli_error(rc: int, err: str, where: str) -> None:
    """The CLI's contract for a data error: exit 1, one cause on stderr's first line, no traceback."""
    assert rc == 1
    first = err.splitlines()[0]
    assert first.startswith("pretriever: error:"), err
    assert f"{where}:" in first, err
    assert "Traceback" not in err


def corpus_via(via: str, folder: Path) -> Any:
    if via == "read_corpus":
        return read_corpus(folder / "corpus.jsonl", progress=False)
    return load_dataset(folder).stats()


def queries_via(via: str, folder: Path) -> Any:
    if via == "read_queries":
        return read_queries(folder / "queries.jsonl")
    return load_dataset(folder).stats()


def qrels_via(via: str, folder: Path, *, lenient: bool = False) -> Any:
    if via == "read_qrels":
        return read_qrels(
            folder / "qrels" / "test.tsv",
            queries={q["_id"] for q in QUERIES},
            documents={d["_id"] for d in DOCS},
            lenient=lenient,
        )
    return load_dataset(folder, lenient=lenient).qrels("test")


def siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


# -- corpus.jsonl ----------------------------------------------------------------------------------

CORPUS_LINE_CASES = [
    pytest.param(b'{"_id": "d3", "text": "x",}', "invalid JSON", id="invalid-json"),
    pytest.param(b'{"_id": "d3", "text": "unclosed}', "invalid JSON", id="unterminated-string"),
    pytest.param(b'["d3", "Bread", "text"]', "expected a JSON object, found list", id="array"),
    pytest.param(b'"just a string"', "expected a JSON object, found str", id="string"),
    pytest.param(b'{"title": "Bread", "text": "x"}', "no '_id' field", id="missing-id"),
    pytest.param(b'{"_id": "d3", "title": "Bread"}', "no 'text' field", id="missing-text"),
    pytest.param(b'{"_id": "d3", "text": null}', "'text' must be a string, found null",
                 id="text-null"),
    pytest.param(b'{"_id": "d3", "text": 42}', "'text' must be a string, found int", id="text-int"),
    pytest.param(b'{"_id": "d3", "title": 7, "text": "x"}', "'title' must be a string",
                 id="title-int"),
    pytest.param(b'{"_id": ["d3"], "text": "x"}', "'_id' must be a string or integer, found list",
                 id="id-list"),
    pytest.param(b'{"_id": true, "text": "x"}', "'_id' must be a string or integer, found bool",
                 id="id-bool"),
    pytest.param(b'{"_id": "  ", "text": "x"}', "'_id' is empty", id="id-blank"),
    pytest.param(b'{"_id": "d1", "text": "again"}', "duplicate document id 'd1' (first at line 1)",
                 id="duplicate-id"),
    pytest.param(b'{"_id": "d3", "text": "caf\xe9"}', "is not valid UTF-8 (byte 0xe9",
                 id="latin1"),
    pytest.param(b'{"_id": "d3", "text": "a\x00b"}', "NUL bytes", id="nul-byte"),
]


@pytest.mark.parametrize("via", ["read_corpus", "load_dataset"])
@pytest.mark.parametrize(("raw", "message"), CORPUS_LINE_CASES)
def test_corpus_bad_line_names_file_and_line(
    tmp_path: Path, via: str, raw: bytes, message: str
) -> None:
    folder = make_beir(tmp_path / "ds", corpus=replace_line(jsonl(DOCS), 3, raw))
    with pytest.raises(DataFormatError) as info:
        corpus_via(via, folder)
    err = info.value
    assert err.path == folder / "corpus.jsonl"
    assert err.line == 3
    assert message in err.message
    assert str(err).startswith(f"{folder / 'corpus.jsonl'}:3: ")


@pytest.mark.parametrize("line", [1, 2, 5])
def test_invalid_json_reports_the_exact_line(tmp_path: Path, line: int) -> None:
    folder = make_beir(tmp_path / "ds", corpus=replace_line(jsonl(DOCS), line, b"{not json"))
    with pytest.raises(DataFormatError, match="invalid JSON") as info:
        read_corpus(folder / "corpus.jsonl", progress=False)
    assert info.value.line == line
    assert "JSON" in info.value.hint


def test_blank_lines_are_skipped_but_still_counted(tmp_path: Path) -> None:
    data = jsonl(DOCS[:2]) + b"\n   \n" + jsonl(DOCS[2:3]) + b"{broken\n"
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as info:
        read_corpus(path, progress=False)
    assert info.value.line == 6


@pytest.mark.parametrize("line", [1, 4])
def test_non_utf8_names_the_line_and_says_utf8(tmp_path: Path, line: int) -> None:
    data = replace_line(jsonl(DOCS), line, b'{"_id": "dx", "text": "caf\xe9 cr\xe8me"}')
    folder = make_beir(tmp_path / "ds", corpus=data)
    with pytest.raises(DataFormatError) as info:
        load_dataset(folder).corpus  # noqa: B018 - the property read is the action under test
    assert info.value.line == line
    assert "UTF-8" in info.value.message
    assert "column 27" in info.value.message  # the first bad byte, 1-based
    assert "iconv" in info.value.hint


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(gzip.compress(jsonl(DOCS), mtime=0), id="gzip"),
        pytest.param(b"\x00\x01\x02\x03binary\xff\xfe\n\x00\x00", id="nul-bytes"),
        pytest.param("{\"_id\": \"d1\", \"text\": \"x\"}\n".encode("utf-16"), id="utf-16"),
    ],
)
def test_binary_file_as_corpus(tmp_path: Path, data: bytes) -> None:
    folder = make_beir(tmp_path / "ds", corpus=data)
    with pytest.raises(DataFormatError) as info:
        load_dataset(folder).stats()
    assert info.value.path == folder / "corpus.jsonl"
    assert info.value.line == 1
    assert "binary" in info.value.message


@pytest.mark.parametrize(
    "last",
    [
        b'{"_id": "d5", "title": "", "text": "Hydroelectric da',
        b'{"_id": "d5", "title": ""',
        b'{"_id": "d5", ',
        b"{",
    ],
)
def test_truncated_last_line_says_truncated(tmp_path: Path, last: bytes) -> None:
    data = jsonl(DOCS[:4]) + last  # no trailing newline: the export was cut off
    folder = make_beir(tmp_path / "ds", corpus=data)
    with pytest.raises(DataFormatError) as info:
        read_corpus(folder / "corpus.jsonl", progress=False)
    assert info.value.line == 5
    assert "invalid JSON" in info.value.message
    assert "truncated" in info.value.hint


def test_bad_last_line_with_newline_is_not_called_truncated(tmp_path: Path) -> None:
    data = jsonl(DOCS[:4]) + b'{"_id": "d5", "text": "x",}\n'
    folder = make_beir(tmp_path / "ds", corpus=data)
    with pytest.raises(DataFormatError) as info:
        read_corpus(folder / "corpus.jsonl", progress=False)
    assert info.value.line == 5
    assert "truncated" not in info.value.message + info.value.hint


def test_missing_final_newline_on_a_complete_line_is_fine(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "ds", corpus=jsonl(DOCS).rstrip(b"\n"))
    corpus = read_corpus(folder / "corpus.jsonl", progress=False)
    assert corpus.ids == [d["_id"] for d in DOCS]
    assert corpus.texts[-1] == DOCS[-1]["text"]


def test_truncated_inside_a_multibyte_character_says_truncated(tmp_path: Path) -> None:
    data = jsonl(DOCS[:4]) + '{"_id": "d5", "text": "café'.encode()[:-1]  # cut inside "é"
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as info:
        read_corpus(path, progress=False)
    assert info.value.line == 5
    # Not str(info.value): pytest's tmp_path for this test contains the word "truncated".
    assert "truncated" in info.value.message + info.value.hint


def test_empty_documents_are_kept_and_counted(tmp_path: Path) -> None:
    extra = [
        {"_id": "e1", "title": "", "text": ""},
        {"_id": "e2", "text": "   "},
        {"_id": "e3", "title": None, "text": ""},
        {"_id": "e4", "title": "Only a title", "text": ""},
    ]
    rows = [*QRELS, ("q3", "e1", 0)]
    folder = make_beir(tmp_path / "ds", corpus=jsonl(DOCS + extra), qrels=qrels_tsv(rows))
    dataset = load_dataset(folder)
    stats = dataset.stats()
    assert stats["documents"] == 9
    assert stats["empty_documents"] == 3
    assert dataset.corpus.ids[-4:] == ["e1", "e2", "e3", "e4"]
    assert dataset.qrels("test")["q3"] == {"d2": 0, "e1": 0}


# -- queries.jsonl ---------------------------------------------------------------------------------

QUERY_LINE_CASES = [
    pytest.param(b'{"_id": "q1", "text": "again"}', "duplicate query id 'q1' (first at line 1)",
                 id="duplicate-id"),
    pytest.param(b'{"_id": "q3"}', "no 'text' field", id="missing-text"),
    pytest.param(b'{"text": "no id"}', "no '_id' field", id="missing-id"),
    pytest.param(b'{"_id": "q3", "text": "caf\xe9"}', "UTF-8", id="latin1"),
    pytest.param(b"[1, 2]", "expected a JSON object", id="array"),
]


@pytest.mark.parametrize("via", ["read_queries", "load_dataset"])
@pytest.mark.parametrize(("raw", "message"), QUERY_LINE_CASES)
def test_queries_bad_line_names_file_and_line(
    tmp_path: Path, via: str, raw: bytes, message: str
) -> None:
    folder = make_beir(tmp_path / "ds", queries=replace_line(jsonl(QUERIES), 3, raw))
    with pytest.raises(DataFormatError) as info:
        queries_via(via, folder)
    assert info.value.path == folder / "queries.jsonl"
    assert info.value.line == 3
    assert message in info.value.message


# -- qrels -----------------------------------------------------------------------------------------

QRELS_LINE_CASES = [
    pytest.param(b"qX\td1\t1", "query id 'qX' is not in the queries file", id="unknown-query"),
    pytest.param(b"q1\tdX\t1", "document id 'dX' is not in the corpus", id="unknown-document"),
    pytest.param(b"q1\td1\tabc", "relevance 'abc' is not a number", id="grade-abc"),
    pytest.param(b"q1\td1\t0.5", "relevance '0.5' is not an integer grade", id="grade-0.5"),
    pytest.param(b"q1\td1\t", "relevance '' is not a number", id="grade-empty"),
    pytest.param(b"q1\td1", "expected 3 columns like the first row, found 2", id="2-columns"),
    pytest.param(b"q1\t0\td1\t1", "expected 3 columns like the first row, found 4", id="4-columns"),
    pytest.param(b"q1\td1\t0", "conflicting grades for (q1, d1): 2 and 0", id="conflict"),
]


@pytest.mark.parametrize("via", ["read_qrels", "load_dataset"])
@pytest.mark.parametrize(("raw", "message"), QRELS_LINE_CASES)
def test_qrels_bad_row_names_file_and_line(
    tmp_path: Path, via: str, raw: bytes, message: str
) -> None:
    folder = make_beir(tmp_path / "ds", qrels=append_line(qrels_tsv(QRELS), raw))
    with pytest.raises(DataFormatError) as info:
        qrels_via(via, folder)
    assert info.value.path == folder / "qrels" / "test.tsv"
    assert info.value.line == 6
    assert message in info.value.message
    assert str(info.value).startswith(f"{folder / 'qrels' / 'test.tsv'}:6: ")


def test_qrels_unknown_ids_hint_at_lenient(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "ds", qrels=replace_line(qrels_tsv(QRELS), 3, b"q9\td1\t1"))
    with pytest.raises(DataFormatError) as info:
        load_dataset(folder).qrels("test")
    assert info.value.line == 3
    assert "--lenient" in info.value.hint


def test_qrels_first_row_with_wrong_column_count(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "ds", qrels=b"q1 d1 x y 1\nq1\td1\t1\n")
    with pytest.raises(DataFormatError, match="found 5") as info:
        load_dataset(folder).qrels("test")
    assert info.value.line == 1


def _lenient_folder(tmp_path: Path) -> Path:
    """qrels with an unknown query on line 3 and an unknown document on line 6."""
    data = replace_line(qrels_tsv(QRELS), 3, b"qX\td5\t1")
    return make_beir(tmp_path / "ds", qrels=append_line(data, b"q2\tdX\t1"))


def test_lenient_drops_counts_and_warns(tmp_path: Path) -> None:
    folder = _lenient_folder(tmp_path)
    with pytest.raises(DataFormatError) as info:
        load_dataset(folder).stats()
    assert info.value.line == 3  # strict by default: the first bad row

    dataset = load_dataset(folder, lenient=True)
    split = dataset.stats()["splits"]["test"]
    assert split["dropped_rows"] == 2
    assert split["judgements"] == 3
    assert dataset.qrels("test") == {"q1": {"d1": 2}, "q2": {"d4": 1}, "q3": {"d2": 0}}
    assert len(dataset.warnings) == 1
    warning = dataset.warnings[0]
    assert str(folder / "qrels" / "test.tsv") in warning
    assert "dropped 2" in warning
    assert "line 3: query id 'qX'" in warning
    assert "line 6: document id 'dX'" in warning


def test_lenient_read_qrels_reports_each_kind(tmp_path: Path) -> None:
    folder = _lenient_folder(tmp_path)
    qrels, report = qrels_via("read_qrels", folder, lenient=True)
    assert (report.rows, report.dropped_rows) == (5, 2)
    assert (report.unknown_queries, report.unknown_documents) == (1, 1)
    assert "qX" not in qrels and "dX" not in qrels["q2"]


def test_lenient_does_not_hide_format_errors(tmp_path: Path) -> None:
    folder = make_beir(tmp_path / "ds", qrels=append_line(qrels_tsv(QRELS), b"q1\td2\tabc"))
    with pytest.raises(DataFormatError, match="not a number") as info:
        load_dataset(folder, lenient=True).qrels("test")
    assert info.value.line == 6


def test_identical_duplicate_qrels_are_tolerated_and_counted(tmp_path: Path) -> None:
    data = append_line(append_line(qrels_tsv(QRELS), b"q1\td1\t2"), b"q2\td4\t1")
    folder = make_beir(tmp_path / "ds", qrels=data)
    dataset = load_dataset(folder)
    assert dataset.qrels("test") == EXPECTED_QRELS
    assert dataset.stats()["splits"]["test"]["duplicate_rows"] == 2
    assert dataset.warnings == []


def test_headerless_qrels_bad_first_grade_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "test.txt"
    path.write_text("q1 0 d1 abc\nq1 0 d5 1\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_qrels(path)
    assert info.value.line == 1


# -- BOM, CRLF, TSV corpora and TREC qrels give the same data --------------------------------------


def _snapshot(folder: Path) -> dict[str, Any]:
    dataset = load_dataset(folder)
    stats = dataset.stats()
    del stats["name"], stats["path"]
    corpus = dataset.corpus
    return {"ids": corpus.ids, "titles": corpus.titles, "texts": corpus.texts,
            "queries": dataset.queries, "qrels": dataset.qrels("test"), "stats": stats}


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(_crlf, id="crlf"),
        pytest.param(lambda data: BOM + data, id="bom"),
        pytest.param(lambda data: BOM + _crlf(data), id="bom+crlf"),
        pytest.param(lambda data: BOM + _crlf(data).rstrip(b"\r\n"), id="bom+crlf+no-final-newline"),
    ],
)
def test_bom_and_crlf_give_the_same_data(tmp_path: Path, transform: Any) -> None:
    clean = make_beir(tmp_path / "clean")
    odd = make_beir(
        tmp_path / "odd",
        corpus=transform(jsonl(DOCS)),
        queries=transform(jsonl(QUERIES)),
        qrels=transform(qrels_tsv(QRELS)),
    )
    expected = _snapshot(clean)
    assert expected["qrels"] == EXPECTED_QRELS
    assert _snapshot(odd) == expected
    assert not any(t.endswith("\r") for t in expected["texts"])


def test_crlf_does_not_shift_error_lines(tmp_path: Path) -> None:
    data = BOM + _crlf(replace_line(jsonl(DOCS), 4, b'{"_id": "d4"}'))
    folder = make_beir(tmp_path / "ds", corpus=data)
    with pytest.raises(DataFormatError, match="no 'text' field") as info:
        read_corpus(folder / "corpus.jsonl", progress=False)
    assert info.value.line == 4


def _tsv_folder(folder: Path, transform: Any) -> Path:
    """The same dataset as ``make_beir``: TSV corpus and queries, TREC qrels."""
    (folder / "qrels").mkdir(parents=True)
    corpus = ["id\ttitle\ttext", *(f"{d['_id']}\t{d['title']}\t{d['text']}" for d in DOCS)]
    queries = [f"{q['_id']}\t{q['text']}" for q in QUERIES]
    trec = [f"{q} 0 {d} {s}" for q, d, s in QRELS]
    for path, lines in [(folder / "corpus.tsv", corpus), (folder / "queries.tsv", queries),
                        (folder / "qrels" / "test.txt", trec)]:
        path.write_bytes(transform("\n".join(lines).encode("utf-8") + b"\n"))
    return folder


@pytest.mark.parametrize(
    "transform",
    [pytest.param(lambda data: data, id="plain"),
     pytest.param(lambda data: BOM + _crlf(data), id="bom+crlf")],
)
def test_tsv_corpus_and_trec_qrels_load_like_beir(tmp_path: Path, transform: Any) -> None:
    expected = _snapshot(make_beir(tmp_path / "beir"))
    assert _snapshot(_tsv_folder(tmp_path / "tsv", transform)) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"d3\tBread", "expected 3 tab-separated columns like line 1, found 2",
                     id="2-columns"),
        pytest.param(b"d3\tBread\ttext\textra", "found 4", id="4-columns"),
        pytest.param(b" \tBread\ttext", "the id column is empty", id="empty-id"),
        pytest.param(b"d1\tAgain\ttext", "duplicate document id 'd1' (first at line 2)",
                     id="duplicate-id"),
    ],
)
def test_tsv_corpus_bad_row(tmp_path: Path, raw: bytes, message: str) -> None:
    folder = _tsv_folder(tmp_path / "tsv", lambda data: data)
    path = folder / "corpus.tsv"
    path.write_bytes(replace_line(path.read_bytes(), 4, raw))
    with pytest.raises(DataFormatError) as info:
        load_dataset(folder).corpus  # noqa: B018 - the property read is the action under test
    assert info.value.path == path
    assert info.value.line == 4
    assert message in info.value.message


def test_trec_qrels_unknown_document_names_line(tmp_path: Path) -> None:
    folder = _tsv_folder(tmp_path / "tsv", lambda data: data)
    path = folder / "qrels" / "test.txt"
    path.write_bytes(replace_line(path.read_bytes(), 2, b"q1 0 nope 1"))
    with pytest.raises(DataFormatError, match="'nope' is not in the corpus") as info:
        load_dataset(folder).qrels("test")
    assert info.value.path == path
    assert info.value.line == 2


# -- TREC run files --------------------------------------------------------------------------------

VALID_RUN = b"q1 Q0 d1 1 2.5 myrun\nq1 Q0 d2 2 1.5 myrun\nq2 Q0 d1 1 0.7 myrun\n"


def test_valid_run_reads(tmp_path: Path) -> None:
    path = tmp_path / "my.run"
    path.write_bytes(VALID_RUN)
    assert read_run(path) == ({"q1": {"d1": 2.5, "d2": 1.5}, "q2": {"d1": 0.7}}, "myrun")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"q1 Q0 d2 2 1.5", "expected 6 columns", id="5-columns"),
        pytest.param(b"q1 Q0 d2 2 1.5 myrun extra", "found 7", id="7-columns"),
        pytest.param(b"q1 Q0 d2 2 high myrun", "score 'high' is not a number", id="score-text"),
        pytest.param(b"q1 Q0 d1 2 1.5 myrun", "document 'd1' appears twice for query 'q1'",
                     id="duplicate-doc"),
        pytest.param(b"q1 Q0 d\xe9 2 1.5 myrun", "UTF-8", id="latin1"),
    ],
)
def test_malformed_run_names_line(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad.run"
    path.write_bytes(replace_line(VALID_RUN, 2, raw))
    with pytest.raises(DataFormatError) as info:
        read_run(path)
    assert info.value.path == path
    assert info.value.line == 2
    assert message in info.value.message


def test_empty_run_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.run"
    path.write_bytes(b"\n\n")
    with pytest.raises(DataFormatError) as info:
        read_run(path)
    assert info.value.line is None
    assert info.value.message == "the run file is empty"


@pytest.mark.parametrize("score", ["nan", "inf", "-inf"])
def test_run_with_non_finite_score_is_an_error(tmp_path: Path, score: str) -> None:
    path = tmp_path / "bad.run"
    path.write_bytes(replace_line(VALID_RUN, 2, f"q1 Q0 d2 2 {score} myrun".encode()))
    with pytest.raises(DataFormatError) as info:
        read_run(path)
    assert info.value.line == 2


# -- the CLI: exit 1, file:line on the first line of stderr ----------------------------------------


@pytest.mark.parametrize(
    ("part", "line", "edit"),
    [
        pytest.param("corpus.jsonl", 3, lambda f: make_beir(
            f, corpus=replace_line(jsonl(DOCS), 3, b'{"_id": "d3", "text": "x",}')),
            id="corpus-invalid-json"),
        pytest.param("corpus.jsonl", 2, lambda f: make_beir(
            f, corpus=replace_line(jsonl(DOCS), 2, b'{"_id": "d2", "text": "caf\xe9"}')),
            id="corpus-latin1"),
        pytest.param("corpus.jsonl", 5, lambda f: make_beir(
            f, corpus=jsonl(DOCS[:4]) + b'{"_id": "d5", "te'), id="corpus-truncated"),
        pytest.param("queries.jsonl", 3, lambda f: make_beir(
            f, queries=replace_line(jsonl(QUERIES), 3, b'{"_id": "q2", "text": "x"}')),
            id="queries-duplicate"),
        pytest.param("qrels/test.tsv", 4, lambda f: make_beir(
            f, qrels=replace_line(qrels_tsv(QRELS), 4, b"q2\tdX\t1")), id="qrels-unknown-doc"),
        pytest.param("qrels/test.tsv", 2, lambda f: make_beir(
            f, qrels=replace_line(qrels_tsv(QRELS), 2, b"q1\td1\t0.5")), id="qrels-grade"),
    ],
)
def test_cli_data_check_reports_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], part: str, line: int, edit: Any
) -> None:
    folder = edit(tmp_path / "ds")
    rc, out, err = cli(["data", "check", str(folder)], capsys)
    assert_cli_error(rc, err, f"{folder / part}:{line}")
    assert out == ""


def test_cli_data_check_lenient_warns_and_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _lenient_folder(tmp_path)
    rc, _, err = cli(["data", "check", str(folder)], capsys)
    assert_cli_error(rc, err, f"{folder / 'qrels' / 'test.tsv'}:3")

    rc, out, err = cli(["data", "check", str(folder), "--lenient", "--json"], capsys)
    assert rc == 0
    assert json.loads(out)["splits"]["test"]["dropped_rows"] == 2
    lines = err.splitlines()
    assert lines and all(line.startswith("pretriever: warning:") for line in lines)
    assert "dropped 2" in err


def test_cli_evaluate_malformed_run_names_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_beir(tmp_path / "ds")
    run = tmp_path / "bad.run"
    run.write_bytes(replace_line(VALID_RUN, 2, b"q1 Q0 d2 2 1.5"))
    rc, out, err = cli(["evaluate", "--dataset", str(folder), "--retriever", str(run)], capsys)
    assert_cli_error(rc, err, f"{run}:2")
    assert out == ""


# -- nothing half-written --------------------------------------------------------------------------


def _tiny_index(tmp_path: Path, docs: list[dict[str, Any]] = DOCS) -> BM25Index:
    path = tmp_path / f"corpus-{len(docs)}.jsonl"
    path.write_bytes(jsonl(docs))
    return BM25Index(progress=False).build(read_corpus(path, progress=False))


def test_cli_index_of_bad_dataset_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_beir(tmp_path / "ds", corpus=replace_line(jsonl(DOCS), 3, b"{oops"))
    parent = tmp_path / "indexes"
    parent.mkdir()
    rc, _, err = cli(["index", "bm25", "--dataset", str(folder), "--out", str(parent / "idx")],
                     capsys)
    assert_cli_error(rc, err, f"{folder / 'corpus.jsonl'}:3")
    assert siblings(parent) == []


def test_cli_index_disk_full_mid_save_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pretriever.indexes.bm25.write_manifest", disk_full)
    folder = make_beir(tmp_path / "ds")
    parent = tmp_path / "indexes"
    rc, _, err = cli(["index", "bm25", "--dataset", str(folder), "--out", str(parent / "idx")],
                     capsys)
    assert rc == 1
    assert err.splitlines()[0].startswith("pretriever: error:")
    assert "No space left on device" in err
    assert siblings(parent) == []


def test_cli_index_of_good_dataset_leaves_only_the_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_beir(tmp_path / "ds")
    parent = tmp_path / "indexes"
    rc, out, _ = cli(["index", "bm25", "--dataset", str(folder), "--out", str(parent / "idx")],
                     capsys)
    assert rc == 0
    assert "indexed 5 documents" in out
    assert siblings(parent) == ["idx"]
    assert (parent / "idx" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("target", "exc"),
    [
        pytest.param("pretriever.indexes.bm25.write_manifest", RuntimeError, id="manifest-error"),
        pytest.param("pretriever.indexes.bm25.write_manifest", KeyboardInterrupt,
                     id="manifest-interrupt"),
        pytest.param("json.dump", OSError, id="json-dump-oserror"),
    ],
)
def test_crash_mid_save_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, exc: type[BaseException]
) -> None:
    index = _tiny_index(tmp_path)
    parent = tmp_path / "indexes"
    written: list[list[str]] = []

    def crash(*args: Any, **kwargs: Any) -> None:
        written.append(siblings(parent))
        raise exc("injected crash")

    monkeypatch.setattr(target, crash)
    with pytest.raises(exc, match="injected crash"):
        index.save(parent / "idx")
    assert written and written[0][0].startswith(".idx")  # the crash hit a half-written folder
    assert not (parent / "idx").exists()
    assert siblings(parent) == []


def test_crash_while_overwriting_keeps_the_old_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "indexes"
    out = parent / "idx"
    _tiny_index(tmp_path).save(out)
    newer = _tiny_index(tmp_path, DOCS[:2])

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected crash")

    monkeypatch.setattr("pretriever.indexes.bm25.write_manifest", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        newer.save(out, overwrite=True)
    assert siblings(parent) == ["idx"]
    old = BM25Index.load(out)  # verifies the manifest's checksums
    assert len(old) == 5
    assert list(old.search({"q": "sourdough starter"}, k=1)["q"]) == ["d4"]

    monkeypatch.undo()
    newer.save(out, overwrite=True)
    assert len(BM25Index.load(out)) == 2
    assert siblings(parent) == ["idx"]


# -- dataset names, the data root and downloads ----------------------------------------------------


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root in PRETRIEVER_DATA, and a cwd where no dataset name resolves."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PRETRIEVER_DATA", str(root))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return root


def test_unknown_name_in_empty_root(data_root: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("my-corpus")
    message = str(info.value)
    assert "no dataset 'my-corpus'" in message
    assert str(data_root) in message and "PRETRIEVER_DATA" in message
    assert "available there: none" in message
    assert "scifact" in message  # the names that could be downloaded


def test_unknown_name_lists_what_is_available(data_root: Path) -> None:
    make_beir(data_root / "mine")
    (data_root / "other").mkdir()
    (data_root / "notes.txt").write_text("not a dataset", encoding="utf-8")
    with pytest.raises(DataNotFoundError, match="available there: mine, other\\."):
        load_dataset("my-corpus")
    assert load_dataset("mine").stats()["documents"] == 5


def test_missing_path_and_missing_files(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="no such file or folder"):
        load_dataset(str(tmp_path / "nope"))
    folder = make_beir(tmp_path / "ds")
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DataNotFoundError, match=re.escape("no corpus.jsonl or corpus.tsv")):
        load_dataset(folder).corpus  # noqa: B018 - the property read is the action under test
    with pytest.raises(DataNotFoundError, match="available splits: test"):
        load_dataset(folder).qrels("dev")


def test_cli_unknown_dataset_name(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data_root / "mine").mkdir()
    rc, _, err = cli(["data", "check", "my-corpus"], capsys)
    assert rc == 1
    assert err.splitlines()[0].startswith("pretriever: error: no dataset 'my-corpus'")
    assert "available there: mine" in err


def _beir_zip(tmp_path: Path, name: str = "scifact", members: dict[str, bytes] | None = None
              ) -> tuple[str, str]:
    """A zip of a valid BEIR folder ``name/``; return (BEIR_URL pattern, md5 of the zip)."""
    if members is None:
        src = make_beir(tmp_path / "zip-src" / name)
        members = {p.relative_to(src.parent).as_posix(): p.read_bytes()
                   for p in sorted(src.rglob("*")) if p.is_file()}
    zips = tmp_path / "zips"
    zips.mkdir(exist_ok=True)
    path = zips / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), data)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return zips.as_uri() + "/{name}.zip", md5


def test_beir_name_offline_says_what_to_do(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pretriever.data.download.BEIR_URL", "file:///nonexistent/{name}.zip")
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("scifact")
    message = str(info.value)
    assert "file:///nonexistent/scifact.zip" in message
    assert "could not be downloaded" in message
    assert "unzip" in message and "PRETRIEVER_DATA" in message
    assert siblings(data_root) == []

    with pytest.raises(DataNotFoundError, match=r"unzip.*PRETRIEVER_DATA"):
        load_dataset("scifact", download=False)


def test_beir_name_downloads_verifies_and_unpacks(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pretriever.data import download

    url, md5 = _beir_zip(tmp_path)
    monkeypatch.setattr(download, "BEIR_URL", url)
    monkeypatch.setitem(download.BEIR_MD5, "scifact", md5)
    dataset = load_dataset("scifact")
    assert dataset.path == data_root / "scifact"
    assert dataset.name == "scifact"
    assert siblings(data_root) == ["scifact"]  # no temporary download folder left
    assert dataset.stats()["documents"] == 5
    assert dataset.qrels("test") == EXPECTED_QRELS

    # Found locally from now on: no second download.
    monkeypatch.setattr(download, "BEIR_URL", "file:///nonexistent/{name}.zip")
    assert load_dataset("scifact").path == data_root / "scifact"


def test_beir_download_with_wrong_md5_leaves_nothing(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pretriever.data import download

    url, md5 = _beir_zip(tmp_path)
    monkeypatch.setattr(download, "BEIR_URL", url)
    monkeypatch.setitem(download.BEIR_MD5, "scifact", "0" * 32)
    with pytest.raises(PretrieverError, match=f"its md5 is {md5}, expected 0{{32}}"):
        load_dataset("scifact")
    assert siblings(data_root) == []


@pytest.mark.parametrize(
    ("members", "message"),
    [
        pytest.param({"../evil.txt": b"x", "scifact/corpus.jsonl": b"{}\n"}, "escapes its folder",
                     id="zip-slip"),
        pytest.param({"scifact/queries.jsonl": jsonl(QUERIES)}, "holds no scifact/corpus.jsonl",
                     id="no-corpus"),
    ],
)
def test_beir_download_of_a_bad_zip_leaves_nothing(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    members: dict[str, bytes], message: str,
) -> None:
    from pretriever.data import download

    url, md5 = _beir_zip(tmp_path, members=members)
    monkeypatch.setattr(download, "BEIR_URL", url)
    monkeypatch.setitem(download.BEIR_MD5, "scifact", md5)
    with pytest.raises(PretrieverError, match=message):
        load_dataset("scifact")
    assert siblings(data_root) == []
    assert not (tmp_path / "evil.txt").exists()


def test_corpus_from_documents_validates_items() -> None:
    from pretriever.data import Corpus
    from pretriever.errors import ConfigError

    with pytest.raises(ConfigError, match="no usable id"):
        Corpus.from_documents([{"text": "no id"}])
    with pytest.raises(ConfigError, match="duplicate id 'a'"):
        Corpus.from_documents([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}])
    with pytest.raises(ConfigError, match="must be strings"):
        Corpus.from_documents([{"_id": "a", "text": None}])
    assert Corpus.from_documents([{"_id": 7, "title": None, "text": "t"}]).ids == ["7"]
