"""``manifest.json``: what an artefact folder is, how to load it, and how to get its scores again.

Every artefact pretriever writes (index, model, pipeline, run) is a folder holding its files and
one manifest::

    {"kind": "index.bm25", "format_version": 1,
     "created": "...", "pretriever_version": "...", "libraries": {"bm25s": "0.3.16", ...},
     "params": {every score-changing parameter}, "provenance": {corpus, command, ...},
     "files": {"relative/path": {"sha256": "...", "bytes": 123}}}

``load`` refuses a folder of another kind, a format newer than this code understands, or a file
whose checksum no longer matches, each with an error that says what to do.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pretriever._io import sha256_file, write_json
from pretriever.errors import DataNotFoundError, ManifestError

MANIFEST = "manifest.json"


def library_versions(*packages: str) -> dict[str, str]:
    """Installed versions of pretriever, Python and the given distributions."""
    versions = {"python": platform.python_version()}
    for name in ("pretriever", "numpy", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """SHA-256 and size of every file under ``folder`` except the manifest itself."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def write_manifest(
    folder: str | Path,
    *,
    kind: str,
    format_version: int,
    params: dict[str, Any],
    provenance: dict[str, Any] | None = None,
    libraries: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Checksum the folder's files and write its manifest; call this last, inside ``atomic_dir``."""
    folder = Path(folder)
    manifest = {
        "kind": kind,
        "format_version": format_version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pretriever_version": library_versions()["pretriever"],
        "libraries": library_versions(*libraries),
        "params": params,
        "provenance": {"argv": sys.argv[:], **(provenance or {})},
        "files": file_checksums(folder),
    }
    write_json(folder / MANIFEST, manifest)
    return manifest


def read_manifest(
    folder: str | Path,
    *,
    kind: str | None = None,
    max_format_version: int | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Read and check a folder's manifest; ``kind`` may end with ``.`` to accept a family."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such folder")
    if not path.is_file():
        raise ManifestError(
            f"{folder} has no {MANIFEST}: it was not written by pretriever, or writing it was "
            "interrupted; rebuild it"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); rebuild the artefact") from None
    if not isinstance(manifest, dict) or "kind" not in manifest or "format_version" not in manifest:
        raise ManifestError(f"{path}: lacks 'kind' or 'format_version'; rebuild the artefact")
    found = manifest["kind"]
    if kind is not None and not (found == kind or (kind.endswith(".") and found.startswith(kind))):
        raise ManifestError(f"{folder} holds a '{found}', not a '{kind.rstrip('.')}'")
    version = manifest["format_version"]
    if max_format_version is not None and version > max_format_version:
        raise ManifestError(
            f"{folder} has format version {version} but this pretriever reads up to "
            f"{max_format_version}; upgrade pretriever (pip install -U pretriever)"
        )
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Raise ManifestError if any listed file is missing or its checksum differs."""
    for rel, expected in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            raise ManifestError(f"{folder}: file '{rel}' listed in the manifest is missing; rebuild")
        if path.stat().st_size != expected["bytes"] or sha256_file(path) != expected["sha256"]:
            raise ManifestError(
                f"{folder}: checksum mismatch for '{rel}': the file changed after it was written "
                "(disk corruption or a manual edit); rebuild the artefact"
            )
