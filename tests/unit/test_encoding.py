"""The resumable, shardable corpus encoding job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pretriever.data import load_dataset
from pretriever.encoding import Shard, assemble, batch_plan, encode_shard
from pretriever.errors import ConfigError, PretrieverError


@pytest.fixture(scope="module")
def adi(real_data: Path):
    return load_dataset(real_data / "adi").corpus


def test_shard_parse() -> None:
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "-1/2", "x", "1/0", "1-2"):
        with pytest.raises(ConfigError):
            Shard.parse(bad)


def test_plan_is_length_sorted_and_complete(minilm, adi) -> None:
    plan = batch_plan(minilm, adi, 8)
    flat = np.concatenate(plan)
    assert sorted(flat.tolist()) == list(range(len(adi)))
    lengths = minilm.token_lengths(adi.contents())[flat]
    assert (np.diff(lengths) <= 0).all()


def test_shards_merge_to_exactly_the_single_process_vectors(minilm, adi, tmp_path: Path) -> None:
    encode_shard(minilm, adi, tmp_path / "one", batch_size=8, progress=False)
    single, n = assemble(tmp_path / "one", tmp_path / "one.npy")[1], len(adi)
    assert single == n
    for i in range(3):
        encode_shard(minilm, adi, tmp_path / "three", shard=Shard(i, 3), batch_size=8,
                     chunk_batches=2, progress=False)
    assemble(tmp_path / "three", tmp_path / "three.npy")
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "three.npy")
    assert a.shape == (n, 384)
    np.testing.assert_array_equal(a, b)
    # and they are the vectors sentence-transformers gives for title + text
    direct = minilm.st.encode(adi.contents()[:3], normalize_embeddings=True)
    np.testing.assert_allclose(a[:3], direct, atol=1e-5)


def test_merge_refuses_missing_shards(minilm, adi, tmp_path: Path) -> None:
    encode_shard(minilm, adi, tmp_path / "w", shard=Shard(0, 2), batch_size=16, progress=False)
    with pytest.raises(PretrieverError, match="shard-00001-of-00002"):
        assemble(tmp_path / "w", tmp_path / "v.npy")


def test_killed_job_resumes_and_matches(minilm, adi, tmp_path: Path, monkeypatch) -> None:
    encode_shard(minilm, adi, tmp_path / "ref", batch_size=8, chunk_batches=2, progress=False)
    assemble(tmp_path / "ref", tmp_path / "ref.npy")

    real = type(minilm).encode_batch
    calls = {"n": 0}

    def dying(self, texts, prompt):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # killed in the middle of the third chunk
        return real(self, texts, prompt)

    monkeypatch.setattr(type(minilm), "encode_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        encode_shard(minilm, adi, tmp_path / "w", batch_size=8, chunk_batches=2, progress=False)
    finished = sorted(p.name for p in (tmp_path / "w" / Shard().name).iterdir())
    assert finished == ["chunk-000000.npz", "chunk-000001.npz"]  # nothing half-written
    monkeypatch.setattr(type(minilm), "encode_batch", real)
    calls["n"] = 0
    counting = {"n": 0}

    def counted(self, texts, prompt):
        counting["n"] += 1
        return real(self, texts, prompt)

    monkeypatch.setattr(type(minilm), "encode_batch", counted)
    encode_shard(minilm, adi, tmp_path / "w", batch_size=8, chunk_batches=2, progress=False)
    assert counting["n"] == len(batch_plan(minilm, adi, 8)) - 4  # the 4 finished batches skipped
    assemble(tmp_path / "w", tmp_path / "w.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "ref.npy"), np.load(tmp_path / "w.npy"))


def test_resume_with_other_settings_is_refused(minilm, adi, tmp_path: Path) -> None:
    encode_shard(minilm, adi, tmp_path / "w", shard=Shard(0, 2), batch_size=16, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        encode_shard(minilm, adi, tmp_path / "w", shard=Shard(1, 2), batch_size=8, progress=False)


def test_float16_storage(minilm, adi, tmp_path: Path) -> None:
    encode_shard(minilm, adi, tmp_path / "w", batch_size=16, dtype="float16", progress=False)
    assemble(tmp_path / "w", tmp_path / "v.npy")
    assert np.load(tmp_path / "v.npy").dtype == np.float16


@pytest.mark.parametrize(("backend", "precision", "tolerance"), [
    ("torch", "float32", 2e-5), pytest.param("openvino", "float32", 2e-5, marks=pytest.mark.slow),
    pytest.param("openvino", "bfloat16", 2e-3, marks=pytest.mark.slow), ("torch", "bfloat16", 1e-2),
])
def test_output_does_not_depend_on_batch_size(adi, backend, precision, tolerance) -> None:
    from pretriever.encoders.dense import DenseEncoder

    texts = adi.contents()[:20]
    small = DenseEncoder("minilm", batch_size=3, backend=backend, precision=precision)
    big = DenseEncoder("minilm", batch_size=20, backend=backend, precision=precision)
    a, b = small.encode_documents(texts), big.encode_documents(texts)
    np.testing.assert_allclose(a, b, atol=tolerance)
    assert (a * b).sum(axis=1).min() > 0.9999
