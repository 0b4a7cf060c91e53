"""Manifests: load refuses the wrong kind, a newer format and changed files."""

import json
from pathlib import Path

import pytest

from pretriever._io import atomic_dir
from pretriever._manifest import read_manifest, write_manifest
from pretriever.errors import DataNotFoundError, ManifestError


def _artefact(tmp_path: Path) -> Path:
    with atomic_dir(tmp_path / "art") as tmp:
        (tmp / "data.bin").write_bytes(b"\x00\x01\x02")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.json").write_text("{}")
        write_manifest(tmp, kind="index.test", format_version=2, params={"k1": 1.2},
                       provenance={"corpus": {"documents": 3}})
    return tmp_path / "art"


def test_manifest_records_everything(tmp_path: Path) -> None:
    m = read_manifest(_artefact(tmp_path), kind="index.test", max_format_version=2)
    assert m["params"] == {"k1": 1.2}
    assert set(m["files"]) == {"data.bin", "sub/x.json"}
    assert m["files"]["data.bin"]["bytes"] == 3
    assert {"python", "numpy", "pretriever"} <= set(m["libraries"])
    assert m["provenance"]["corpus"] == {"documents": 3}
    assert "created" in m


def test_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a 'model'"):
        read_manifest(_artefact(tmp_path), kind="model")


def test_kind_family(tmp_path: Path) -> None:
    assert read_manifest(_artefact(tmp_path), kind="index.")["kind"] == "index.test"


def test_newer_format(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="upgrade pretriever"):
        read_manifest(_artefact(tmp_path), max_format_version=1)


def test_checksum_mismatch(tmp_path: Path) -> None:
    folder = _artefact(tmp_path)
    (folder / "data.bin").write_bytes(b"\x00\x01\x03")
    with pytest.raises(ManifestError, match=r"checksum mismatch for 'data\.bin'"):
        read_manifest(folder)
    assert read_manifest(folder, verify=False)["kind"] == "index.test"


def test_missing_file(tmp_path: Path) -> None:
    folder = _artefact(tmp_path)
    (folder / "sub" / "x.json").unlink()
    with pytest.raises(ManifestError, match="missing"):
        read_manifest(folder)


def test_missing_or_corrupt_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        read_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        read_manifest(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text(json.dumps({"kind": "x"}))
    with pytest.raises(ManifestError, match="format_version"):
        read_manifest(tmp_path / "empty")
