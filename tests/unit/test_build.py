"""`pretriever build`: the zero-label recipe on ADI end to end, resumed after a kill to the same
pipeline; the labelled recipe never reads the test qrels for a choice and drops a stage that loses
on dev; the plan fits the budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pretriever.errors import ConfigError
from pretriever.recipe import BuildConfig, build, make_plan

TORCH = ["--backend", "torch", "--precision", "float32"]
FP32 = {"backend": "torch", "precision": "float32"}


@pytest.fixture(scope="module")
def adi_build(tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> Path:
    """The zero-label build of ADI, through the command line (torch fp32: no OpenVINO compile)."""
    from pretriever.cli import main

    out = tmp_path_factory.mktemp("build") / "adi"
    assert main(["build", "--dataset", "adi", "--out", str(out), "--quiet", *TORCH]) == 0
    return out


@pytest.mark.slow
def test_zero_label_build_writes_pipeline_report_and_choices(adi_build: Path) -> None:
    from pretriever.retrieval.loading import load_index

    assert not Path(str(adi_build) + ".work").exists()
    data = json.loads((adi_build / "build.json").read_text())
    assert [s["name"] for s in data["stages"]] == ["bm25", "dense", "colbert"]
    assert data["config"]["bm25_feedback"] == "rm3:max_query_terms=3"
    runs = data["test"]["runs"]
    # measured (RESULTS.md, "Building", OpenVINO bf16): hybrid 0.5434, built 0.5471 (torch fp32: 0.5478)
    assert runs["hybrid (off the shelf)"]["nDCG@10"] == pytest.approx(0.5434, abs=2e-3)
    assert runs["built pipeline"]["nDCG@10"] == pytest.approx(0.5471, abs=2e-3)
    report = (adi_build / "report.md").read_text()
    assert "built pipeline" in report and (adi_build / "chart.png").stat().st_size > 0
    pipeline = load_index(adi_build)
    assert list(pipeline.retrievers) == ["bm25", "dense", "colbert"]
    assert pipeline.retrievers["bm25"].feedback.max_query_terms == 3


@pytest.mark.slow
def test_a_killed_build_resumes_to_the_same_pipeline(
    adi_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pretriever.data.dataset import load_dataset
    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.retrieval.loading import load_index

    out = tmp_path / "adi"
    real = ColBERTEncoder.encode_batch
    calls = {"n": 0}

    def dying(self, *args, **kwargs):  # the process dies in the middle of the third stage's encoding
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ColBERTEncoder, "encode_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        build(BuildConfig(dataset="adi", out=str(out), **FP32), progress=False)
    assert not out.exists()
    state = json.loads((tmp_path / "adi.work" / "state.json").read_text())
    assert list(state["stages"]) == ["bm25", "dense"]
    monkeypatch.setattr(ColBERTEncoder, "encode_batch", real)
    messages: list[str] = []
    build(BuildConfig(dataset="adi", out=str(out), **FP32), progress=False, log=messages.append)
    assert any("resuming" in m and "bm25, dense" in m for m in messages)
    assert not any("stage dense" in m for m in messages)  # not built again
    queries = load_dataset("adi").split_queries("test")
    resumed, fresh = load_index(out).search(queries, k=20), load_index(adi_build).search(queries, k=20)
    assert resumed.keys() == fresh.keys()
    for q in queries:
        assert list(resumed[q]) == list(fresh[q])
        assert list(resumed[q].values()) == pytest.approx(list(fresh[q].values()), abs=1e-5)


@pytest.fixture
def labelled_adi(tmp_path: Path, real_data: Path) -> Path:
    """ADI with its judgements as a train split, and a test split that cannot be read."""
    folder = tmp_path / "adi-labelled"
    shutil.copytree(real_data / "adi", folder)
    shutil.move(folder / "qrels" / "test.tsv", folder / "qrels" / "train.tsv")
    (folder / "qrels" / "test.tsv").write_text("this is not a qrels file\n\x00\x01", encoding="utf-8")
    return folder


@pytest.mark.slow
def test_labelled_build_never_reads_test_and_drops_a_losing_stage(
    labelled_adi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from pretriever import recipe
    from pretriever.encoders.dense import DenseEncoder

    def damaged(config, dataset, work, examples, progress, say):  # a fine-tuning that wrecked the model
        encoder = DenseEncoder("minilm", backend="torch", precision="float32")
        with torch.no_grad():
            for parameter in encoder.st.parameters():
                parameter.add_(torch.randn_like(parameter, generator=torch.Generator().manual_seed(0)) * 0.5)
        encoder.st.save(str(work / "dense-ft"))
        return work / "dense-ft"

    monkeypatch.setattr(recipe, "fine_tune_dense", damaged)
    monkeypatch.setattr(recipe, "measure_encoding", lambda *args: 50.0)
    monkeypatch.setattr(recipe, "WISE_FT_WEIGHTS", (0.5, 1.0))
    config = BuildConfig(
        dataset=str(labelled_adi),
        out=str(tmp_path / "out"),
        train_split="train",
        dev_fraction=0.3,
        colbert=False,
        budget_minutes=30,
        **FP32,
    )
    result = build(config, progress=False)
    stages = {s.name: s for s in result.stages}
    assert stages["zero-label"].dev is not None
    tuned = stages["fine-tune"]
    assert not tuned.kept and "dropped" in tuned.reason
    assert tuned.dev < stages["zero-label"].dev
    assert set(tuned.choice["dev_by_weight"]) == {0.5, 1.0}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Dropped: fine-tune (dropped: dev" in report
    assert "No test comparison" in report and result.test and "error" in result.test
    built = json.loads((tmp_path / "out" / "build.json").read_text())
    assert built["stages"][-1]["name"] == "fusion weights"


def test_plan_scales_training_to_the_budget(real_data: Path) -> None:
    from pretriever.data.dataset import load_dataset

    dataset = load_dataset("scifact", progress=False)
    config = BuildConfig(dataset="scifact", out="x", train_split="train", budget_minutes=30)
    plan, examples = make_plan(config, dataset, docs_per_second=100.0, n_examples=900)
    assert examples == 900 and sum(p["minutes"] for p in plan) <= 30
    plan, short = make_plan(
        BuildConfig(dataset="scifact", out="x", train_split="train", budget_minutes=10),
        dataset,
        docs_per_second=100.0,
        n_examples=900,
    )
    assert 32 <= short < 900 and sum(p["minutes"] for p in plan) <= 10.5
    with pytest.raises(ConfigError, match="leaves no time to fine-tune"):
        make_plan(
            BuildConfig(dataset="scifact", out="x", train_split="train", budget_minutes=2),
            dataset,
            docs_per_second=100.0,
            n_examples=900,
        )
    plan, none = make_plan(BuildConfig(dataset="scifact", out="x"), dataset, 100.0, 0)
    assert none is None and [p["stage"] for p in plan] == ["bm25", "dense", "colbert"]


def test_build_refuses_test_as_a_choice_split() -> None:
    with pytest.raises(ConfigError, match="test split"):
        BuildConfig(dataset="adi", out="x", train_split="test")
    with pytest.raises(ConfigError, match="test split"):
        BuildConfig(dataset="adi", out="x", train_split="train", dev_split="test")
    with pytest.raises(ConfigError, match="needs --train-split"):
        BuildConfig(dataset="adi", out="x", dev_split="dev")
    with pytest.raises(ConfigError, match="unknown feedback"):
        BuildConfig(dataset="adi", out="x", bm25_feedback="rm4")
    with pytest.raises(ConfigError, match="is the training split"):
        BuildConfig(dataset="adi", out="x", train_split="train", dev_split="train")
    with pytest.raises(ConfigError, match="needs --train-split"):
        BuildConfig(dataset="adi", out="x", budget_minutes=10)
    with pytest.raises(ConfigError, match="rocchio or none"):
        BuildConfig(dataset="adi", out="x", dense_feedback="rm3")


def test_an_embedded_encoder_travels_with_its_index(minilm, tiny: Path, tmp_path: Path) -> None:
    """A model trained in a build's work folder is copied into the index, which then searches after
    the work folder (and the index's old place) are gone."""
    from pretriever.data.dataset import load_dataset
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.indexes.dense import FlatIndex
    from pretriever.retrieval.loading import load_index

    minilm.st.save(str(tmp_path / "trained"))
    corpus = load_dataset(tiny).corpus
    index = FlatIndex(DenseEncoder(str(tmp_path / "trained"), backend="torch", precision="float32"),
                      progress=False).build(corpus)
    index.embed_encoder = True
    index.save(tmp_path / "index")
    queries = {"q": "solar electricity"}
    expected = index.search(queries, k=3)
    shutil.rmtree(tmp_path / "trained")
    moved = shutil.move(tmp_path / "index", tmp_path / "elsewhere")
    loaded = load_index(moved)
    assert loaded.encoder_spec()["source"] == str(Path(moved) / "model")
    assert list(loaded.search(queries, k=3)["q"]) == list(expected["q"])
    again = loaded.save(tmp_path / "copy")  # saved again: embedded again
    assert (again / "model").is_dir() and load_index(again).embed_encoder


@pytest.mark.parametrize("seed", [42, 7])
def test_the_trainer_never_trains_on_the_queries_the_build_chooses_on(real_data: Path, seed: int) -> None:
    from pretriever.data.dataset import load_dataset
    from pretriever.recipe import _dev_split, trainer_config
    from pretriever.training.splits import train_and_dev

    dataset = load_dataset("scifact", progress=False)
    config = BuildConfig(dataset="scifact", out="x", train_split="train", seed=seed)
    build_dev = _dev_split(config, dataset)
    trained_on, trainer_dev = train_and_dev(dataset, trainer_config(config, dataset, Path("x"), "bm25", 100))
    assert build_dev and not set(trained_on) & set(build_dev)
    assert set(trainer_dev) <= set(build_dev)
