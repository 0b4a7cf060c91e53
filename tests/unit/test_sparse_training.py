"""Training learned sparse encoders (training/sparse.py, objectives/flops.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig
from pretriever.training.negatives.static import NegativeConfig
from pretriever.training.objectives.flops import flops, idf_penalty
from pretriever.training.pretrain.lexical import Options as LexicalOptions
from pretriever.training.sparse import FlopsConfig, SparsePretrainConfig, SparseTrainConfig, train_sparse
from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir


def test_idf_aware_flops_with_equal_idfs_is_plain_flops() -> None:
    reps = torch.rand(6, 50) * (torch.rand(6, 50) > 0.7)
    for value in (0.5, 3.0):
        penalty = torch.as_tensor(idf_penalty(np.full(50, value)))
        assert torch.allclose(flops(reps, penalty), flops(reps))
    by_hand = (reps.mean(dim=0) ** 2).sum()
    assert torch.allclose(flops(reps), by_hand)


def test_idf_aware_flops_spares_rare_terms() -> None:
    idf = np.array([0.0, 0.5, 1.0, 4.0])  # a special token, a frequent term, ..., a rare term
    penalty = idf_penalty(idf)
    assert penalty[3] < penalty[2] < penalty[1]
    assert penalty[0] == penalty[1]  # IDF 0 pays what the lowest positive IDF pays
    assert np.isclose(penalty[1:].mean() > 1, True)  # mean(idf) / idf: frequent terms pay more than 1
    rare = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    frequent = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    weights = torch.as_tensor(penalty)
    assert flops(rare, weights) < flops(rare) < flops(frequent, weights)


def test_flops_weight_ramps_up_quadratically() -> None:
    config = FlopsConfig(document=1.0, warmup_ratio=0.5)
    assert config.weight(1.0, 0.0) == 0.0
    assert config.weight(1.0, 0.25) == pytest.approx(0.25)
    assert config.weight(1.0, 0.5) == config.weight(1.0, 0.9) == 1.0
    assert FlopsConfig(warmup_ratio=0).weight(2.0, 0.0) == 2.0


def test_bad_sparse_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="sparse_kind"):
        SparseTrainConfig(dataset="d", out="o", sparse_kind="dense")
    with pytest.raises(ConfigError, match="teacher"):
        SparseTrainConfig(dataset="d", out="o", loss="margin-mse")
    with pytest.raises(ConfigError, match="flops"):
        FlopsConfig(document=-1)
    with pytest.raises(ConfigError, match="max_examples"):
        SparsePretrainConfig(dataset="d", out="o", batch_size=8, max_examples=4)
    with pytest.raises(ConfigError, match="student_scale"):
        SparsePretrainConfig(dataset="d", out="o", student_scale=0.0)


def _labelled(tmp_path: Path) -> Path:
    qrels = [("q1", "d1", 1), ("q2", "d4", 1), ("q3", "d2", 1)]
    return write_beir(tmp_path / "tiny", TINY_DOCS, TINY_QUERIES, qrels, split="train")


def _terms_per_document(folder: Path) -> float:
    from pretriever.encoders.sparse import SparseEncoder

    rows = SparseEncoder(folder).encode_documents([f"{d['title']} {d['text']}" for d in TINY_DOCS])
    return rows.nnz / rows.shape[0]


@pytest.mark.slow
def test_training_on_tiny_data_lowers_the_loss_and_follows_the_flops_weight(tmp_path: Path) -> None:
    data = _labelled(tmp_path)

    def run(name: str, weight: float) -> tuple[list[float], float, dict]:
        config = SparseTrainConfig(
            dataset=str(data),
            out=str(tmp_path / name),
            first_stage="bm25",
            batch_size=3,
            dev_fraction=0.0,
            negatives=NegativeConfig(hard=1, depth=4),
            loop=LoopConfig(epochs=6, lr=1e-4, warmup_ratio=0.0, checkpoint_steps=2),
            flops=FlopsConfig(document=weight, warmup_ratio=0.0),
        )
        report = train_sparse(config, progress=False)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        return report.loop.losses, _terms_per_document(tmp_path / name), manifest["provenance"]["training"]

    losses, free_terms, _ = run("free", 0.0)
    assert losses[-1] < losses[0]
    _, sparse_terms, provenance = run("regularised", 1.0)
    assert sparse_terms < 0.8 * free_terms  # the FLOPS weight is what sparsifies
    assert provenance["flops_penalty"] == "idf-aware" and provenance["kind"] == "inference-free"


@pytest.mark.slow
def test_pretrain_sparse_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pretriever.cli import main
    from pretriever.encoders.sparse import SparseEncoder

    data = write_beir(tmp_path / "tiny", TINY_DOCS, TINY_QUERIES, [("q1", "d1", 1)])
    out = tmp_path / "sparse-pre"
    code = main(
        [
            "pretrain",
            "--kind",
            "sparse",
            "--dataset",
            str(data),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--set",
            "max_examples=null",
            "--set",
            "lexical.depth=3",
            "--quiet",
        ]
    )
    assert code == 0
    assert "pre-trained a sparse encoder on 5 documents" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "model.sparse"
    provenance = manifest["provenance"]["pretraining"]
    assert provenance["trainer"] == "sparse-pretrain" and provenance["student_scale"] > 0
    assert SparseEncoder(out).sparse_kind == "inference-free"
    assert (
        main(
            [
                "pretrain",
                "--kind",
                "sparse",
                "--dataset",
                str(data),
                "--out",
                str(tmp_path / "x"),
                "--tasks",
                "ict",
            ]
        )
        != 0
    )


def test_pretrain_sparse_options_are_the_lexical_tasks() -> None:
    config = SparsePretrainConfig(dataset="d", out="o", lexical=LexicalOptions(negatives=1, depth=5))
    assert config.lexical.depth == 5 and config.flops.idf_aware


@pytest.mark.slow
def test_a_resumed_sparse_pretraining_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = write_beir(tmp_path / "tiny", TINY_DOCS, TINY_QUERIES, [("q1", "d1", 1)])

    def config(name: str) -> SparsePretrainConfig:
        return SparsePretrainConfig(
            dataset=str(data),
            out=str(tmp_path / name),
            batch_size=2,
            max_examples=None,
            lexical=LexicalOptions(negatives=1, depth=3),
            loop=LoopConfig(epochs=2, lr=1e-4, checkpoint_steps=1),
        )

    whole = train_sparse(config("whole"), progress=False)
    assert whole.loop.finished and whole.loop.total_steps >= 3
    first = train_sparse(config("resumed"), progress=False, stop_after=1)
    assert not first.loop.finished and not (tmp_path / "resumed").exists()
    second = train_sparse(config("resumed"), progress=False)
    assert second.loop.resumed_from == 1 and second.loop.finished
    weights = [load_file(next((tmp_path / name).rglob("model.safetensors"))) for name in ("whole", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
