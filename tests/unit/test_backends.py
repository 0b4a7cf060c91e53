"""Inference backends (torch fp32/bf16, OpenVINO f32/bf16/int8), `optimize` and its quality guard,
and the manifest check that keeps query and document vectors comparable."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from pretriever.data import load_dataset
from pretriever.encoders import openvino as ovmod
from pretriever.encoders.dense import DenseEncoder, check_compatible
from pretriever.errors import ConfigError, PretrieverError
from pretriever.indexes.dense import FlatIndex
from pretriever.optimize import QualityGuardError, optimize


@pytest.fixture(scope="module")
def adi(real_data: Path):
    return load_dataset(real_data / "adi")


@pytest.fixture(scope="module")
def int8_model(adi, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "minilm-int8"
    report = optimize("minilm", adi.corpus, precision="int8", out=out, calibration=40, check=40)
    assert report.folder == out
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.mark.parametrize(("backend", "precision"), [
    ("torch", "bfloat16"), pytest.param("openvino", "float32", marks=pytest.mark.slow),
    pytest.param("openvino", "bfloat16", marks=pytest.mark.slow)])
def test_backends_agree_with_fp32(minilm, adi, backend: str, precision: str) -> None:
    texts = adi.corpus.contents()[:24]
    reference = minilm.encode_documents(texts)
    encoder = DenseEncoder("minilm", backend=backend, precision=precision, batch_size=8)
    vectors = encoder.encode_documents(texts)
    assert encoder.resolved == (backend, precision)
    assert encoder.spec()["backend"] == backend and encoder.spec()["precision"] == precision
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert _cosines(vectors, reference).mean() >= 0.9999


def test_conversion_keeps_quiet_about_a_training_loss(minilm) -> None:
    """Tracing probes the module's ``loss_function``; transformers then warns (once per process)
    that the model 'uses ForCausalLMLoss', which is false for an embedder and must not reach users."""
    import logging

    import transformers.utils.logging  # noqa: F401 (it adds Logger.warning_once)

    logging.Logger.warning_once.cache_clear()  # transformers' once-per-process memory
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    source = logging.getLogger("transformers.modeling_utils")
    source.addHandler(handler)
    try:
        ovmod.convert(copy.deepcopy(minilm.st[0].auto_model), minilm.st.tokenizer, 32)
    finally:
        source.removeHandler(handler)
    assert not [message for message in seen if "loss_type" in message]


@pytest.mark.slow
def test_auto_resolution(monkeypatch: pytest.MonkeyPatch, int8_model: Path) -> None:
    monkeypatch.setattr(ovmod, "cpu_has_bf16", lambda: True)
    assert DenseEncoder("minilm").resolved == ("openvino", "bfloat16")
    assert DenseEncoder("minilm", backend="torch").resolved == ("torch", "bfloat16")
    assert DenseEncoder(int8_model).resolved == ("openvino", "int8")  # a calibrated int8 model wins
    monkeypatch.setattr(ovmod, "cpu_has_bf16", lambda: False)
    assert DenseEncoder("minilm").resolved == ("torch", "float32")
    monkeypatch.setattr(ovmod, "openvino_available", lambda: False)
    monkeypatch.setattr(ovmod, "cpu_has_bf16", lambda: True)
    assert DenseEncoder("minilm").resolved == ("torch", "bfloat16")
    with pytest.raises(ConfigError, match="pretriever optimize"):
        _ = DenseEncoder("minilm", precision="int8").resolved
    with pytest.raises(ConfigError):
        DenseEncoder("minilm", backend="onnx")


@pytest.mark.slow
def test_optimize_round_trip_keeps_quality(int8_model: Path, adi, minilm) -> None:
    manifest = json.loads((int8_model / "openvino" / "manifest.json").read_text())
    assert manifest["kind"] == "encoder.openvino" and manifest["params"]["precision"] == "int8"
    assert "float_ops" not in manifest["params"]  # an encoder is quantised everywhere
    check = manifest["provenance"]["check"]
    assert check["quality"] >= 0.995 and check["measure"] == "mean cosine" and check["documents"] == 40
    assert manifest["provenance"]["calibration"]["documents"] == 40
    assert {"openvino_model.xml", "openvino_model.bin"} <= set(manifest["files"])
    # the int8 model encodes other ADI documents close to fp32 ...
    texts = adi.corpus.contents()
    fast = DenseEncoder(int8_model, batch_size=16).encode_documents(texts)
    assert _cosines(fast, minilm.encode_documents(texts)).mean() >= 0.995
    # ... and the folder still loads unchanged in plain sentence-transformers (fp32 weights)
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(int8_model), device="cpu")
    np.testing.assert_allclose(plain.encode(texts[:3], normalize_embeddings=True),
                               minilm.encode_documents(texts[:3]), atol=1e-5)


@pytest.mark.slow
def test_guard_refuses_a_damaged_model(adi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def damaged(model, tokenizer, texts, max_length, batch_size=8, pairs_with=None):
        broken = copy.deepcopy(DenseEncoder("minilm").st[0].auto_model)
        with torch.no_grad():
            for p in broken.encoder.layer[0].parameters():
                p.add_(torch.randn_like(p, generator=torch.Generator().manual_seed(0)) * 0.5)
        return ovmod.convert(broken, tokenizer, max_length)

    monkeypatch.setattr("pretriever.optimize.quantize_int8", damaged)
    out = tmp_path / "bad"
    with pytest.raises(QualityGuardError, match=r"mean cosine -?0\.\d+.*--min-quality"):
        optimize("minilm", adi.corpus, out=out, calibration=8, check=16)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    report = optimize("minilm", adi.corpus, out=out, calibration=8, check=16, min_quality=-1.0)
    check = json.loads((out / "openvino" / "manifest.json").read_text())["provenance"]["check"]
    assert check["threshold"] == -1.0 and check["quality"] == report.quality < 0.995  # kept, and says so
    with pytest.raises(PretrieverError, match="--overwrite"):
        optimize("minilm", adi.corpus, out=out, calibration=8, check=16, min_quality=-1.0)


def test_bundled_model_needs_out(adi) -> None:
    with pytest.raises(ConfigError, match="--out"):
        optimize("minilm", adi.corpus)


@pytest.mark.slow
def test_another_model_is_refused_another_backend_is_recorded(tiny: Path, tmp_path: Path, minilm,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ds = load_dataset(tiny)
    FlatIndex(minilm, progress=False).build(ds.corpus).save(tmp_path / "idx")
    with pytest.raises(ConfigError, match="prompts"):
        FlatIndex.load(tmp_path / "idx", encoder=DenseEncoder("minilm", query_prompt="query: "))
    with pytest.raises(ConfigError, match="max_length"):
        FlatIndex.load(tmp_path / "idx", encoder=DenseEncoder("minilm", max_length=64))
    other = DenseEncoder("minilm", backend="openvino", precision="bfloat16")
    index = FlatIndex.load(tmp_path / "idx", encoder=other)
    assert any("queries with bfloat16" in n for n in index.notes)
    assert index.search(ds.queries, k=2)["q1"]
    # the CLI reports it in the evaluation (the manifest says torch fp32; auto here may differ)
    from pretriever.cli import main

    assert main(["evaluate", "-d", str(tiny), "-r", str(tmp_path / "idx"), "--json",
                 "--backend", "openvino", "--precision", "bfloat16"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert "documents encoded with backend torch, queries with openvino (same model)" in notes


def test_check_compatible_on_weights() -> None:
    spec = DenseEncoder("minilm").spec()
    with pytest.raises(ConfigError, match="weights_sha256"):
        check_compatible(spec, {**spec, "weights_sha256": "0" * 64})
    assert check_compatible(spec, {**spec, "backend": "x"}) == [
        f"documents encoded with backend {spec['backend']}, queries with x (same model)"]
