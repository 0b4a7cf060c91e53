"""Index updates (indexes/updates.py) beyond the contract suite: BM25 equal to a rebuild bit for bit,
refused updates that change nothing, and a pipeline whose reranker reads the added texts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pretriever.data.corpus import Corpus
from pretriever.errors import ConfigError
from pretriever.indexes.bm25 import METHODS, BM25Index
from pretriever.retrieval.live import LIVE, LOG, LiveIndex
from pretriever.types import Document

WORDS = ["heart", "lung", "blood", "sugar", "insulin", "statin", "aspirin", "vitamin", "sleep", "memory",
         "cancer", "tumour", "gene", "protein", "cell", "mouse", "trial", "dose", "risk", "death", "stroke",
         "brain", "liver", "kidney", "bone"]


def corpus(n: int, seed: int, prefix: str = "d") -> list[Document]:
    rng = random.Random(seed)
    docs = [Document(f"{prefix}{i}", " ".join(rng.choices(WORDS, k=rng.randint(3, 40))),
                     rng.choice(["", "Title " + rng.choice(WORDS)])) for i in range(n)]
    docs[3] = Document(docs[3].id, "the of and", "")  # only stopwords: an empty document
    return docs


QUERIES = {f"q{i}": " ".join(random.Random(i).choices(WORDS, k=1 + i % 6)) for i in range(30)}


@pytest.mark.parametrize("method", METHODS)
def test_bm25_after_updates_is_a_rebuild_bit_for_bit(method: str) -> None:
    base, extra = corpus(60, 1), corpus(15, 2, "n")
    rare = Document("r1", "zebrafish zebrafish fins")  # its terms leave the vocabulary on delete
    index = BM25Index(method=method, progress=False).build(Corpus.from_documents([*base, rare]))
    index.add(extra[:10])
    index.delete(["r1", "d5", "n2"])
    index.upsert([Document("d7", "insulin insulin sugar", "Replaced"), *extra[10:]])
    kept = [d for d in [*base, *extra[:10]] if d.id not in {"d5", "n2", "d7"}]
    rebuilt = BM25Index(method=method, progress=False).build(
        Corpus.from_documents([*kept, Document("d7", "insulin insulin sugar", "Replaced"), *extra[10:]]))
    assert index.search(QUERIES, k=20) == rebuilt.search(QUERIES, k=20)  # every score, every bit
    assert index.search({"z": "zebrafish"}) == {"z": {}}


def test_upserting_every_document_and_refusing_to_empty_an_index() -> None:
    docs = corpus(8, 3)
    index = BM25Index(progress=False).build(Corpus.from_documents(docs))
    index.upsert([Document(d.id, d.text + " renewed") for d in docs])
    assert len(index) == 8 and index.search({"q": "renewed"}, k=3)["q"]
    before = index.search(QUERIES, k=5)
    with pytest.raises(ConfigError, match="every document"):
        index.delete([d.id for d in docs])
    assert index.search(QUERIES, k=5) == before and len(index) == 8  # refused before any change


def test_an_update_that_cannot_be_applied_is_never_committed(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    BM25Index(progress=False).build(Corpus.from_documents(corpus(8, 4))).save(tmp_path / "idx")
    with LiveIndex.open(tmp_path / "idx") as live:
        before = live.search(QUERIES, k=5)

        def broken(self: BM25Index, ids: list[str], payload: dict) -> None:
            raise ConfigError("no room")

        monkeypatch.setattr(BM25Index, "apply_add", broken)
        with pytest.raises(ConfigError, match="no room"):
            live.add([Document("new", "insulin")])
        monkeypatch.undo()
        assert live.seq == 0 and not list((tmp_path / "idx" / LIVE / LOG).glob("*.npz"))
        assert live.search(QUERIES, k=5) == before
        assert live.add([Document("new", "insulin")]) == 1  # the next update takes seq 1


def test_a_reader_follows_the_writer_through_compactions(tmp_path: Path) -> None:
    BM25Index(progress=False).build(Corpus.from_documents(corpus(8, 5))).save(tmp_path / "idx")
    with LiveIndex.open(tmp_path / "idx") as writer:
        reader = LiveIndex.open(tmp_path / "idx", readonly=True)
        writer.add([Document("n1", "zebrafish")])
        assert reader.search({"q": "zebrafish"}, k=1)["q"].keys() == {"n1"}
        writer.compact()
        writer.delete(["n1"])
        writer.add([Document("n2", "zebrafish fins")])
        assert reader.search({"q": "zebrafish"}, k=5)["q"].keys() == {"n2"}
        assert reader.get("n2").text == "zebrafish fins" and reader.seq == writer.seq
        assert writer.search(QUERIES, k=5) == reader.search(QUERIES, k=5)


def test_leftovers_of_interrupted_writes_are_removed(tmp_path: Path) -> None:
    BM25Index(progress=False).build(Corpus.from_documents(corpus(8, 6))).save(tmp_path / "idx")
    with LiveIndex.open(tmp_path / "idx") as live:
        live.add([Document("n1", "zebrafish")])
        live.compact()
        live.add([Document("n2", "zebrafish")])
        live.compact()
    live_dir = tmp_path / "idx" / LIVE
    (live_dir / ".snapshot-000000000009.tmp.tmp-abc").mkdir()  # a compaction killed mid-save
    (live_dir / LOG / ".000000000003.tmp").write_bytes(b"half")  # an entry killed mid-write
    (live_dir / "snapshot-000000000001").mkdir()  # an old snapshot half removed
    with LiveIndex.open(tmp_path / "idx") as live:
        assert live.seq == 2 and "n2" in live
    assert sorted(p.name for p in live_dir.iterdir()) == ["lock", "log", "snapshot-000000000002"]
    assert not list((live_dir / LOG).iterdir())


@pytest.mark.slow
def test_a_pipeline_reranker_reads_the_added_texts(tiny_reranker: Path, tiny: Path, tmp_path: Path) -> None:
    from pretriever.data import load_dataset
    from pretriever.encoders.cross import Reranker
    from pretriever.retrieval import Pipeline, load_index

    ds = load_dataset(tiny)
    reranker = Reranker.load(tiny_reranker, backend="torch", precision="float32", batch_size=2)
    pipeline = Pipeline({"bm25": BM25Index(progress=False)}, reranker=reranker).build(ds.corpus)
    pipeline.save(tmp_path / "pipe")
    with LiveIndex.open(tmp_path / "pipe") as live:
        live.add([Document("d9", "Rye bread needs no yeast when made with sourdough.", "Rye")])
        live.delete(["d3"])
        assert "d9" in live.search({"q": "bread without yeast"}, k=5)["q"]
        live.compact()
    again = load_index(tmp_path / "pipe")
    assert "d9" in again.documents and "d3" not in again.documents
    query = {"q": "bread without yeast"}
    assert again.search(query, k=5) == live.index.search(query, k=5)
