"""One hierarchy for every error pretriever raises on purpose.

    PretrieverError
    ├── DataFormatError(path, line)   a file the user gave us is malformed
    ├── DataNotFoundError             a dataset, file or artefact is not where we looked
    ├── ManifestError                 an artefact folder is of the wrong kind, too new, or corrupt
    ├── NotBuiltError                 an index or encoder was used before build()/load()
    ├── MissingDependencyError(extra) an optional feature's package is not installed
    ├── ConfigError                   an option or parameter value is not valid
    │   └── DuplicateDocumentError(ids) an added document's id is already in the index
    ├── UnknownDocumentError(ids)     a document id that is not in the index
    └── TextsUnavailableError         the texts of an index's documents are not at hand

Every message says where, what was expected, what was found and what to do, so that the CLI can
print it as one line and exit 1 (2 for ConfigError, which is a usage error).
"""

from __future__ import annotations

from pathlib import Path


class PretrieverError(Exception):
    """Base class: catch this to handle every deliberate pretriever error."""


class DataFormatError(PretrieverError, ValueError):
    """A user-supplied file is malformed; carries the file and (1-based) line number."""

    def __init__(self, path: str | Path, line: int | None, message: str, hint: str = "") -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        self.hint = hint
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        text = f"{where}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class DataNotFoundError(PretrieverError, FileNotFoundError):
    """A dataset, file or artefact folder does not exist where it was looked for."""


class ManifestError(PretrieverError):
    """An artefact folder cannot be trusted: missing/corrupt manifest, wrong kind, newer format."""


class NotBuiltError(PretrieverError, RuntimeError):
    """An index or encoder was used before ``build()`` or ``load()``."""


class MissingDependencyError(PretrieverError, ImportError):
    """An optional feature needs a package that is not installed; names the pip command."""

    def __init__(self, package: str, extra: str | None = None, feature: str = "") -> None:
        self.package = package
        self.extra = extra
        install = f"pip install 'pretriever[{extra}]'" if extra else f"pip install {package}"
        what = f" for {feature}" if feature else ""
        super().__init__(f"the package '{package}' is needed{what} but is not installed; run: {install}")


class ConfigError(PretrieverError, ValueError):
    """An option or parameter has an invalid value; the message lists the valid ones."""


def shown(ids: list[str], most: int = 5) -> str:
    """The first few ids of a list, quoted, for a message."""
    return ", ".join(repr(i) for i in ids[:most]) + (" ..." if len(ids) > most else "")


class DuplicateDocumentError(ConfigError):
    """Documents added under ids the index already holds (or twice in one batch); ``ids`` lists them.
    Upsert replaces them instead."""

    def __init__(self, ids: list[str], message: str = "") -> None:
        self.ids = list(ids)
        super().__init__(message or f"{len(self.ids)} document id(s) already in the index: "
                         f"{shown(self.ids)}; delete them first or upsert (replace) them")


class UnknownDocumentError(PretrieverError, LookupError):
    """Document ids that are not in the index; ``ids`` lists them."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = list(ids)
        super().__init__(f"{len(self.ids)} document id(s) not in the index: {shown(self.ids)}")

    def __str__(self) -> str:  # LookupError's str() would quote the message
        return str(self.args[0])


class TextsUnavailableError(PretrieverError):
    """A document's text was asked for (to show it, or to pack a RAG context) but the index keeps
    only its vectors or terms, and the corpus it was built from is not at hand."""
