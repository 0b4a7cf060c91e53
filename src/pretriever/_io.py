"""File plumbing every module shares: atomic writes and line readers that know their line numbers.

Why atomic: a killed job must never leave a half-written index or run where a finished one is
expected. Everything is written beside its destination under a temporary name, then renamed
into place (a rename within one filesystem is atomic on POSIX).

Why our own line reader: users' files arrive with BOMs, CRLF endings, stray binary bytes and
truncated last lines; each problem is reported with the file and line where it happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pretriever.errors import DataFormatError, DataNotFoundError, PretrieverError

_BOM = b"\xef\xbb\xbf"


def _umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fresh_output(path: str | Path, overwrite: bool) -> Path:
    """``path``, refused up front if it exists and may not be replaced: before minutes of work, not
    after them (``atomic_dir`` checks again when it writes)."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise PretrieverError(f"{out} already exists; choose another --out or pass --overwrite")
    return out


def work_folder(out: Path, given: str | Path | None = None) -> Path:
    """Where a resumable job keeps its chunks or checkpoints: ``given``, or ``OUT.work`` beside the
    output."""
    return Path(given) if given else out.with_name(out.name + ".work")


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary folder is removed and ``final``
    is left exactly as it was. With ``overwrite`` an existing ``final`` is replaced only after
    the new folder is complete.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise PretrieverError(
            f"{final} already exists; choose another output folder or pass overwrite=True "
            "(--overwrite on the command line)"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; a saved index is not
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)  # put the previous version back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``final`` for writing; rename it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, sort_keys=False)
        handle.write("\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class LineReader:
    """Iterate ``(line_number, text)`` over a UTF-8 text file, streaming.

    Tolerates a BOM and CRLF endings. Raises :class:`DataFormatError` naming the line for
    non-UTF-8 bytes and for NUL bytes (a binary file). After a full iteration ``sha256`` holds
    the digest of the raw bytes, so provenance costs no second read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataNotFoundError(f"{self.path}: no such file")
        self.sha256: str | None = None
        self.last_line_complete = True
        self.bytes_read = 0  # how far the iteration is, for progress reports

    def __iter__(self) -> Iterator[tuple[int, str]]:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                self.bytes_read += len(raw)
                self.last_line_complete = raw.endswith(b"\n")
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                if b"\x00" in raw:
                    raise DataFormatError(
                        self.path,
                        number,
                        "contains NUL bytes: this looks like a binary file, not text",
                        "give a UTF-8 text file (JSONL or TSV)",
                    )
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if not raw.endswith(b"\n") and exc.end >= len(raw.rstrip(b"\r")):
                        raise DataFormatError(
                            self.path, number, "ends inside a multi-byte character",
                            "the file looks truncated; re-export it",
                        ) from None
                    raise DataFormatError(
                        self.path,
                        number,
                        f"is not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})",
                        "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
                    ) from None
                yield number, text.rstrip("\r\n")
        self.sha256 = digest.hexdigest()


def iter_jsonl(reader: LineReader) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    for number, text in reader:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = "each line must be one JSON object"
            if not reader.last_line_complete:
                hint = "the last line has no newline: the file looks truncated; re-export it"
            raise DataFormatError(
                reader.path, number, f"invalid JSON at column {exc.colno}: {exc.msg}", hint
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(
                reader.path,
                number,
                f"expected a JSON object, found {type(obj).__name__}",
                "each line must be one JSON object such as {\"_id\": ..., \"text\": ...}",
            )
        yield number, obj
