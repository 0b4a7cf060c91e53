"""Corpora and query files: JSONL (BEIR) or TSV, streamed once and validated line by line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pretriever._io import LineReader, iter_jsonl
from pretriever._progress import Progress
from pretriever.errors import ConfigError, DataFormatError
from pretriever.types import Document, Queries

ID_KEYS = ("_id", "id", "docid", "doc_id")
TEXT_KEYS = ("text", "contents", "body")
FORMATS = ("jsonl", "tsv")
READ_PROGRESS_MB = 300  # a corpus file this large takes seconds to read (about 140 MB/s here): report it


class Corpus:
    """Documents in file order, held once as parallel lists (ids, titles, texts).

    Parallel lists rather than a dict of Document objects: a few bytes per document instead of a
    few hundred, which matters for multi-million document corpora.
    """

    def __init__(
        self,
        ids: list[str],
        titles: list[str],
        texts: list[str],
        *,
        source: Path | None = None,
        sha256: str | None = None,
    ) -> None:
        if not len(ids) == len(titles) == len(texts):
            raise ValueError("ids, titles and texts must have the same length")
        self.ids = ids
        self.titles = titles
        self.texts = texts
        self.source = source
        self.sha256 = sha256
        self._position: dict[str, int] | None = None

    @classmethod
    def from_documents(cls, documents: Iterable[Document | dict[str, Any]]) -> Corpus:
        """Build from Document objects or BEIR-style dicts (``_id``/``id``, ``title``, ``text``)."""
        ids: list[str] = []
        titles: list[str] = []
        texts: list[str] = []
        seen: dict[str, int] = {}
        for i, doc in enumerate(documents):
            if isinstance(doc, Document):
                doc_id, title, text = doc.id, doc.title, doc.text
            else:
                doc_id, title, text = _first(doc, ID_KEYS), doc.get("title"), _first(doc, TEXT_KEYS)
            if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or not str(doc_id).strip():
                raise ConfigError(f"document #{i} has no usable id (found {doc_id!r}); give '_id'")
            if not isinstance(text, str) or not (title is None or isinstance(title, str)):
                raise ConfigError(f"document #{i} ('{doc_id}'): 'text' and 'title' must be strings")
            doc_id = str(doc_id).strip()
            if doc_id in seen:
                raise ConfigError(f"document #{i}: duplicate id '{doc_id}' (first at #{seen[doc_id]})")
            seen[doc_id] = i
            ids.append(doc_id)
            titles.append(title or "")
            texts.append(text)
        corpus = cls(ids, titles, texts)
        corpus._position = {doc_id: i for i, doc_id in enumerate(ids)}
        return corpus

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Document]:
        for doc_id, title, text in zip(self.ids, self.titles, self.texts):
            yield Document(doc_id, text, title)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.positions

    def __getitem__(self, doc_id: str) -> Document:
        i = self.positions[doc_id]
        return Document(self.ids[i], self.texts[i], self.titles[i])

    @property
    def positions(self) -> dict[str, int]:
        """Document id -> position in file order (built once, on first use)."""
        if self._position is None:
            self._position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        return self._position

    def contents(self) -> list[str]:
        """Title and text of every document joined with a space: what lexical indexes see."""
        return [f"{t} {x}" if t else x for t, x in zip(self.titles, self.texts)]

    def text_map(self) -> TextMap:
        """Document id -> title and text joined (as ``contents``), without a second copy."""
        return TextMap(self)

    @property
    def n_empty(self) -> int:
        """Documents with neither title nor text (kept, so qrels pointing at them stay valid)."""
        return sum(1 for t, x in zip(self.titles, self.texts) if not t.strip() and not x.strip())

    def fingerprint(self) -> dict[str, Any]:
        """What an index manifest records about the corpus it was built from."""
        return {
            "source": str(self.source) if self.source else None,
            "sha256": self.sha256,
            "documents": len(self),
        }


class TextMap(Mapping[str, str]):
    """Read-only view of a Corpus: document id -> contents (title and text joined)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.positions = corpus.positions

    def __getitem__(self, doc_id: str) -> str:
        i = self.positions[doc_id]
        title, text = self.corpus.titles[i], self.corpus.texts[i]
        return f"{title} {text}" if title else text

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.positions

    def __iter__(self) -> Iterator[str]:
        return iter(self.corpus.ids)

    def __len__(self) -> int:
        return len(self.corpus)


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in obj:
            return obj[key]
    return None


def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown file format '{fmt}'; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".txt", ".tab"):
        return "tsv"
    raise ConfigError(
        f"{path}: cannot tell the format from the extension '{suffix}'; name the file .jsonl or "
        ".tsv, or pass the format explicitly"
    )


def _id_of(path: Path, line: int, obj: dict[str, Any], what: str) -> str:
    value = _first(obj, ID_KEYS)
    if value is None:
        raise DataFormatError(
            path, line, f"{what} has no '_id' field", 'each line needs {"_id": ..., "text": ...}'
        )
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(
            path, line, f"'_id' must be a string or integer, found {type(value).__name__}"
        )
    value = str(value).strip()
    if not value:
        raise DataFormatError(path, line, "'_id' is empty", "give every entry a non-empty id")
    return value


def _string_field(path: Path, line: int, obj: dict[str, Any], keys: tuple[str, ...],
                  what: str, required: bool) -> str:
    present = [k for k in keys if k in obj]
    if not present:
        if required:
            raise DataFormatError(
                path, line, f"{what} has no '{keys[0]}' field",
                'each line needs {"_id": ..., "text": ...}',
            )
        return ""
    value = obj[present[0]]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataFormatError(
            path, line, f"'{present[0]}' must be a string, found "
            f"{'null' if value is None else type(value).__name__}",
        )
    return value


def _tsv_rows(reader: LineReader, what: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a header-optional TSV file whose first column is an id."""
    width: int | None = None
    for number, text in reader:
        if not text.strip():
            continue
        cells = text.split("\t")
        if width is None:
            width = len(cells)
            if width not in (2, 3):
                raise DataFormatError(
                    reader.path, number,
                    f"expected 2 or 3 tab-separated columns (id, [title,] text), found {width}",
                    f"write one {what} per line as id<TAB>text or id<TAB>title<TAB>text",
                )
            if cells[0].strip().lower() in {"id", "_id", "docid", "doc_id", "qid", "query-id"}:
                continue  # header
        elif len(cells) != width:
            raise DataFormatError(
                reader.path, number, f"expected {width} tab-separated columns like line 1, "
                f"found {len(cells)}", "tabs inside a text must be replaced by spaces",
            )
        yield number, cells


def read_corpus(path: str | Path, fmt: str | None = None, *, progress: bool = True) -> Corpus:
    """Read a corpus file (BEIR JSONL or TSV) once, streaming, validating every line.

    Raises DataFormatError naming the file and line for invalid JSON, a missing id or text, a
    duplicate id, non-UTF-8 bytes or binary content. Empty documents are kept (see ``n_empty``).
    """
    path = Path(path)
    fmt = _detect_format(path, fmt)
    reader = LineReader(path)
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    first_line: dict[str, int] = {}
    rows: Iterator[tuple[int, Any]]
    rows = iter_jsonl(reader) if fmt == "jsonl" else _tsv_rows(reader, "document")
    size_mb = path.stat().st_size // 1_000_000
    # a bar only where reading takes a while (about 20 MB a second here): large corpora
    bar = Progress(size_mb, f"reading {path.name}", "MB", enabled=progress and size_mb >= READ_PROGRESS_MB)
    for number, row in rows:
        if bar.enabled and (done := reader.bytes_read // 1_000_000) > bar.count:
            bar.update(done - bar.count)
        if fmt == "jsonl":
            doc_id = _id_of(path, number, row, "document")
            text = _string_field(path, number, row, TEXT_KEYS, "document", required=True)
            title = _string_field(path, number, row, ("title",), "document", required=False)
        else:
            doc_id = row[0].strip()
            if not doc_id:
                raise DataFormatError(path, number, "the id column is empty")
            title, text = (row[1], row[2]) if len(row) == 3 else ("", row[1])
        if doc_id in first_line:
            raise DataFormatError(
                path, number, f"duplicate document id '{doc_id}' (first at line "
                f"{first_line[doc_id]})", "document ids must be unique",
            )
        first_line[doc_id] = number
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    bar.close()
    corpus = Corpus(ids, titles, texts, source=path, sha256=reader.sha256)
    corpus._position = {doc_id: i for i, doc_id in enumerate(ids)}
    return corpus


def read_queries(path: str | Path, fmt: str | None = None) -> Queries:
    """Read queries (BEIR JSONL with ``_id``/``text``, or TSV ``id<TAB>text``), validated."""
    path = Path(path)
    fmt = _detect_format(path, fmt)
    reader = LineReader(path)
    queries: Queries = {}
    first_line: dict[str, int] = {}
    rows: Iterator[tuple[int, Any]]
    rows = iter_jsonl(reader) if fmt == "jsonl" else _tsv_rows(reader, "query")
    for number, row in rows:
        if fmt == "jsonl":
            query_id = _id_of(path, number, row, "query")
            text = _string_field(path, number, row, TEXT_KEYS, "query", required=True)
        else:
            if len(row) != 2:
                raise DataFormatError(path, number, "queries need 2 columns: id<TAB>text")
            query_id, text = row[0].strip(), row[1]
            if not query_id:
                raise DataFormatError(path, number, "the id column is empty")
        if query_id in first_line:
            raise DataFormatError(
                path, number, f"duplicate query id '{query_id}' (first at line "
                f"{first_line[query_id]})", "query ids must be unique",
            )
        first_line[query_id] = number
        queries[query_id] = text
    return queries
