"""Atomic writes: a crash leaves the destination as it was, never half-written."""

from pathlib import Path

import pytest

from pretriever._io import LineReader, atomic_dir, atomic_file
from pretriever.errors import PretrieverError


def test_atomic_dir_appears_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_crash_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(PretrieverError, match="already exists"), atomic_dir(tmp_path / "out"):
        pass


def test_atomic_dir_overwrite_keeps_old_on_crash(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(final, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
        raise KeyboardInterrupt
    assert (final / "v").read_text() == "1"
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (final / "v").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_file_crash_keeps_old(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(ValueError), atomic_file(path) as handle:
        handle.write("new")
        raise ValueError
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_line_reader_bom_crlf_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n")
    reader = LineReader(path)
    assert list(reader) == [(1, "one"), (2, "two")]
    assert reader.sha256 is not None and len(reader.sha256) == 64


def test_saved_artefacts_are_readable_by_others(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("1")
        with atomic_file(tmp_path / "f") as handle:
            handle.write("1")
    finally:
        os.umask(old)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_failed_swap_restores_the_previous_version(tmp_path: Path, monkeypatch) -> None:
    import os

    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("1")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder into place
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr("pretriever._io.os.replace", flaky)
    with pytest.raises(OSError), atomic_dir(final, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    monkeypatch.undo()
    assert (final / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
