"""TREC run files and the (-score, doc id) ordering."""

from pathlib import Path

import pytest

from pretriever.runs import ranked, read_run, sort_run, write_run


def test_ties_break_on_doc_id() -> None:
    hits = ranked({"b": 1.0, "a": 1.0, "c": 2.0, "d": 0.5})
    assert [h.doc_id for h in hits] == ["c", "a", "b", "d"]
    assert [h.rank for h in hits] == [1, 2, 3, 4]


def test_round_trip_and_name(tmp_path: Path) -> None:
    run = {"q1": {"b": 1.0, "a": 1.0, "c": 0.25}, "q2": {"x": -1.5}}
    path = write_run(tmp_path / "r.trec", run, name="my-run")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 a 1 1 my-run"
    assert lines[1].startswith("q1 Q0 b 2 1 ")
    again, name = read_run(path)
    assert again == run and name == "my-run"


def test_write_cuts_at_k(tmp_path: Path) -> None:
    path = write_run(tmp_path / "r.trec", {"q": {"a": 3, "b": 2, "c": 1}}, k=2)
    assert len(path.read_text().splitlines()) == 2
    assert sort_run({"q": {"a": 1, "b": 2}}, k=1) == {"q": {"b": 2}}


def test_bad_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_run(tmp_path / "r.trec", {"q": {"a": 1.0}}, name="two words")
