"""One hierarchy for every error pretriever raises on purpose.

    PretrieverError
    ├── DataFormatError(path, line)   a file the user gave us is malformed
    ├── DataNotFoundError             a dataset, file or artefact is not where we looked
    ├── ManifestError                 an artefact folder is of the wrong kind, too new, or corrupt
    ├── NotBuiltError                 an index or encoder was used before build()/load()
    ├── MissingDependencyError(extra) an optional feature's package is not installed
    └── ConfigError                   an option or parameter value is not valid

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
