"""Durable updates of an index folder (retrieval/live.py): the log, snapshots, locks, crashes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pretriever.data import load_dataset
from pretriever.errors import (
    ConfigError,
    DuplicateDocumentError,
    ManifestError,
    TextsUnavailableError,
    UnknownDocumentError,
)
from pretriever.indexes import BM25Index
from pretriever.retrieval import live as live_module
from pretriever.retrieval import load_index
from pretriever.retrieval.live import LIVE, LOG, LiveIndex
from pretriever.types import Document

NEW = [Document("n1", "Geothermal plants tap the heat below the ground.", "Geothermal"),
       Document("n2", "Rye flour gives a dense, dark bread.", "Rye")]


@pytest.fixture
def folder(tiny: Path, tmp_path: Path) -> Path:
    BM25Index(progress=False).build(load_dataset(tiny).corpus).save(tmp_path / "idx")
    return tmp_path / "idx"


def _state(live: LiveIndex) -> dict[str, str]:
    return {d: live.texts()[d] for d in live.index.positions()}


def test_updates_survive_reopening_and_load_index_sees_them(folder: Path) -> None:
    with LiveIndex.open(folder) as live:
        assert live.has_texts and live.seq == 0  # texts from the corpus the manifest names
        assert live.add(NEW) == 1
        assert live.delete(["d3"]) == 2
        assert live.add([Document("d2", "Tidal turbines make electricity.", "Tides")], upsert=True) == 3
        before = live.search({"q": "dark rye bread", "t": "tidal electricity"}, k=3)
        state = _state(live)
    assert "d3" not in state and state["d2"] == "Tides Tidal turbines make electricity."
    with LiveIndex.open(folder) as again:
        assert again.seq == 3 and _state(again) == state
        assert again.search({"q": "dark rye bread", "t": "tidal electricity"}, k=3) == before
        assert again.get("n2") == NEW[1]
    plain = load_index(folder)  # every reader sees the acknowledged state
    assert "n1" in plain and "d3" not in plain and len(plain) == 6


def test_refused_updates_write_nothing(folder: Path) -> None:
    with LiveIndex.open(folder) as live:
        with pytest.raises(DuplicateDocumentError):
            live.add([Document("d1", "again")])
        with pytest.raises(UnknownDocumentError):
            live.delete(["nope"])
        with pytest.raises(UnknownDocumentError):
            live.get("nope")
        with pytest.raises(ConfigError, match="empty"):
            live.delete(["d1", "d2", "d3", "d4", "d5"])
        assert live.seq == 0 and not list((folder / LIVE / LOG).iterdir())


def test_one_writer_per_folder_and_readonly_refuses_updates(folder: Path) -> None:
    with LiveIndex.open(folder):
        with pytest.raises(ConfigError, match="already open for updates"):
            LiveIndex.open(folder)
        reader = LiveIndex.open(folder, readonly=True)
        with pytest.raises(ConfigError, match="read-only"):
            reader.add(NEW)
    LiveIndex.open(folder).close()  # released on close


def test_compaction_writes_a_snapshot_and_drops_the_log(folder: Path) -> None:
    with LiveIndex.open(folder) as live:
        live.add(NEW)
        live.delete(["d1"])
        expected = live.search({"q": "bread", "e": "electricity heat"}, k=5)
        live.compact()
        assert live.stats()["pending_updates"] == 0
        assert not list((folder / LIVE / LOG).glob("*.npz"))
        assert live.search({"q": "bread", "e": "electricity heat"}, k=5) == expected
    with LiveIndex.open(folder) as again:
        assert again.snapshot_seq == 2 and again.seq == 2 and "d1" not in again
        assert again.search({"q": "bread", "e": "electricity heat"}, k=5) == expected
        again.add([Document("n3", "Bread and butter.")])
    with LiveIndex.open(folder) as last:
        assert last.seq == 3 and "n3" in last and last.get("n1") == NEW[0]


def test_automatic_compaction_and_batched_replay(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LiveIndex.open(folder, compact_every=10**6) as live:
        for i in range(6):
            live.add([Document(f"n{i}", f"note number {i}")])
    calls = []
    original = BM25Index._rescore
    monkeypatch.setattr(BM25Index, "_rescore", lambda self: calls.append(1) or original(self))
    with LiveIndex.open(folder, compact_every=3) as live:  # 6 pending >= 3: compacts in the background
        assert len(calls) == 1  # six entries replayed, BM25 statistics recomputed once
        live._compacting.join()
        assert live.stats()["pending_updates"] == 0 and len(live) == 11


def test_texts_unavailable_then_given(tiny: Path, tmp_path: Path) -> None:
    corpus = load_dataset(tiny).corpus
    BM25Index(progress=False).build(corpus).save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "moved.jsonl").write_bytes(Path(manifest["provenance"]["corpus"]["source"]).read_bytes())
    Path(manifest["provenance"]["corpus"]["source"]).unlink()  # the corpus went away
    with LiveIndex.open(tmp_path / "idx") as live:
        assert not live.has_texts
        with pytest.raises(TextsUnavailableError, match="--corpus"):
            live.get("d1")
    with LiveIndex.open(tmp_path / "idx", corpus=tmp_path / "moved.jsonl") as live:
        assert live.has_texts and live.get("d4").title == "Sourdough"


def test_a_write_killed_before_its_rename_leaves_the_state_before(folder: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with LiveIndex.open(folder) as live:
        live.add(NEW[:1])

        def crash(*args: object) -> None:
            raise KeyboardInterrupt  # as if killed between fsync and rename

        monkeypatch.setattr(live_module.os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            live.add(NEW[1:])
        monkeypatch.undo()
        assert "n2" not in live and live.seq == 1
    with LiveIndex.open(folder) as again:
        assert "n1" in again and "n2" not in again
        assert not [p for p in (folder / LIVE / LOG).iterdir() if p.name.startswith(".")]


def test_a_corrupt_entry_is_named(folder: Path) -> None:
    with LiveIndex.open(folder) as live:
        live.add(NEW)
    entry = next((folder / LIVE / LOG).glob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:50])
    with pytest.raises(ManifestError, match="cannot be read"):
        LiveIndex.open(folder)


def test_ivfpq_updates(tmp_path: Path) -> None:
    """IVF-PQ needs 256+ vectors to train: random unit vectors, updated by payload directly."""
    from pretriever.data.corpus import Corpus
    from pretriever.indexes.ann import FaissIndex

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex(index_type="ivfpq", pq_m=8, nprobe=64, progress=False)
    index._install(vectors[:300], Corpus([f"d{i}" for i in range(300)], [""] * 300, [""] * 300), {})
    assert not index.exact_updates
    index.apply_add([f"d{i}" for i in range(300, 400)], {"vectors": vectors[300:]})
    index.delete([f"d{i}" for i in range(0, 400, 2)])
    queries = vectors[1::2][:20]
    run = index.search_vectors([str(i) for i in range(20)], queries, 10)
    assert all(int(d[1:]) % 2 for hits in run.values() for d in hits)  # deleted never returned
    assert sum(max(hits, key=hits.get) == f"d{2 * i + 1}" for i, hits in enumerate(run.values())) >= 18
    index.compact()
    assert len(index) == 200
    again = index.search_vectors([str(i) for i in range(20)], queries, 10)
    assert all(int(d[1:]) % 2 for hits in again.values() for d in hits)


# -- the crash test: an update loop killed with SIGKILL at random points ---------------------------------
CHILD = """
import json, random, sys
from pretriever.retrieval.live import LiveIndex
from pretriever.types import Document
live = LiveIndex.open(sys.argv[1], compact_every=int(sys.argv[3]))
rng = random.Random(int(sys.argv[2]))
ids = sorted(live.index.positions())
print("ready", flush=True)
for step in range(100000):
    roll = rng.random()
    if roll < 0.5 or len(ids) < 3:
        doc = Document(f"s{sys.argv[2]}-{step}", f"text {step} " * rng.randint(1, 50))
        print(json.dumps({"begin": "add", "id": doc.id, "text": doc.text}), flush=True)
        live.add([doc])
        ids.append(doc.id)
    elif roll < 0.8:
        victim = ids.pop(rng.randrange(len(ids)))
        print(json.dumps({"begin": "delete", "id": victim}), flush=True)
        live.delete([victim])
    else:
        doc = Document(ids[rng.randrange(len(ids))], f"replaced {step}")
        print(json.dumps({"begin": "upsert", "id": doc.id, "text": doc.text}), flush=True)
        live.add([doc], upsert=True)
    print("ack", flush=True)
"""


def crash_trial(folder: Path, seed: int, kill_after: float, compact_every: int = 25) -> str:
    """Run the update loop on ``folder``, SIGKILL it ``kill_after`` seconds after it is ready, reopen:
    the contents must be the acknowledged state, or that plus the update in flight. Returns which."""
    with LiveIndex.open(folder) as live:
        state = _state(live)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(seed), str(compact_every)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(kill_after)
    os.kill(child.pid, signal.SIGKILL)
    lines, _ = child.communicate()
    in_flight = None
    for line in lines.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # cut off by the kill
        if line.strip() == "ack":
            op = in_flight
            in_flight = None
            if op["begin"] == "delete":
                del state[op["id"]]
            else:
                state[op["id"]] = op["text"]
        else:
            in_flight = json.loads(line)
    with LiveIndex.open(folder) as live:
        found = _state(live)
        assert len(live) == len(found) and set(live.search({"q": "text"}, k=5)["q"]) <= set(found)
    if found == state:
        return "before"
    assert in_flight is not None, "the index differs from the acknowledged state"
    after = dict(state)
    if in_flight["begin"] == "delete":
        del after[in_flight["id"]]
    else:
        after[in_flight["id"]] = in_flight["text"]
    assert found == after, "the index is neither the acknowledged state nor that plus the update in flight"
    return "after"


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_an_acknowledged_state(folder: Path) -> None:
    rng = random.Random(7)
    outcomes = [crash_trial(folder, seed, rng.uniform(0.05, 0.6)) for seed in range(4)]
    assert len(outcomes) == 4
