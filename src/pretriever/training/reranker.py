"""``train_reranker``: a cross-encoder trained on labelled (query, document) pairs with hard
negatives from any first stage.

Losses: listwise softmax over one positive and n negatives (default; Gao et al. 2021) or
pointwise BCE (Nogueira & Cho 2019). Negatives: STAR-style static hard negatives from the first
stage, optionally mixed with random ones (``training.negatives.static``). Optionally the
difficulty curriculum of MacAvaney et al. 2020 (``training.curriculum``). A dev set (the
dataset's ``dev`` split, else a seeded share of the training queries held out from training)
reranks its first-stage top ``dev_depth`` after each epoch; the best weights are kept. The result
is a sentence-transformers CrossEncoder folder with a manifest recording the resolved config,
the dev history and the held-out queries (so a pipeline can tune its interpolation on them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.data.dataset import Dataset, load_dataset
from pretriever.errors import ConfigError, PretrieverError
from pretriever.training.config import to_dict
from pretriever.training.loop import LoopConfig, LoopResult, autocast_dtype, train_loop
from pretriever.training.negatives.static import Example, NegativeConfig, build_examples
from pretriever.types import Qrels, Queries, Run

LOSSES = ("listwise", "bce")


@dataclass(frozen=True)
class RerankerConfig:
    """Every setting of ``pretriever train-reranker`` (see ``--help`` for each)."""

    dataset: str
    out: str
    split: str = "train"
    base: str = "minilm"
    loss: str = "listwise"
    first_stage: str = "bm25"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(hard=7, depth=100))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=1, lr=3e-5))
    batch_size: int = 4
    max_length: int = 256
    curriculum: bool = False
    curriculum_epochs: float = 1.0
    dev_split: str | None = None
    dev_fraction: float = 0.1
    dev_depth: int = 30
    dev_max_queries: int = 100
    max_examples: int | None = None
    head_lr_scale: float = 1.0
    precision: str = "auto"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.split == "test" or self.dev_split == "test":
            raise ConfigError("a reranker must not be trained or selected on the test split")
        if self.batch_size < 1 or self.max_length < 16 or self.dev_depth < 1:
            raise ConfigError("batch_size >= 1, max_length >= 16 and dev_depth >= 1 are required")
        if not 0.0 <= self.dev_fraction < 0.5:
            raise ConfigError(f"dev_fraction must be in [0, 0.5), got {self.dev_fraction}")


@dataclass
class TrainReport:
    """What ``train_reranker`` produced."""

    folder: Path
    loop: LoopResult
    train_queries: int
    dev_queries: int
    examples_per_epoch: int


def first_stage_run(dataset: Dataset, spec: str, queries: Queries, depth: int, *,
                    progress: bool = True) -> Run:
    """The run of retriever ``spec`` (bm25 | dense | hybrid | index folder | run file) on
    ``queries``; a run file must cover them."""
    from pretriever.indexes.base import load_index
    from pretriever.retrieval.spec import RETRIEVER_NAMES, build_named, check_same_corpus
    from pretriever.runs import read_run

    if spec in RETRIEVER_NAMES:
        return build_named(spec, dataset, progress=progress).search(queries, k=depth)
    path = Path(spec).expanduser()
    if path.is_dir():
        index = load_index(path)
        check_same_corpus(index, dataset, path)
        return index.search(queries, k=depth)
    if path.is_file():
        run, _ = read_run(path)
        missing = [q for q in queries if q not in run]
        if len(missing) == len(queries):
            raise ConfigError(f"the run file {path} answers none of the {len(queries)} training queries")
        return run
    raise ConfigError(f"first stage '{spec}' is neither bm25, dense, hybrid, an index folder nor a run file")


def split_dev(qrels: Qrels, fraction: float, seed: int) -> tuple[Qrels, Qrels]:
    """Hold out a seeded share of the queries: (train, dev)."""
    ids = sorted(qrels)
    n_dev = round(len(ids) * fraction)
    if n_dev == 0:
        return qrels, {}
    held = set(np.random.default_rng([seed, 7]).choice(len(ids), size=n_dev, replace=False).tolist())
    dev = {ids[i]: qrels[ids[i]] for i in sorted(held)}
    return {q: v for q, v in qrels.items() if q not in dev}, dev


def tune_interpolation(reranker: Any, first: Run, queries: Queries, qrels: Qrels, texts: Any,
                       depth: int, step: float = 0.1) -> dict[str, Any]:
    """The weight of the reranker's scores against the first stage's that scores best on held-out
    queries (ties: more reranker), with the first stage's and the pure reranker's scores there."""
    from pretriever.encoders.cross import rerank_scores
    from pretriever.evaluation.measures import evaluate
    from pretriever.runs import sort_run

    top = sort_run(first, depth)
    scores = reranker.score_run(top, queries, texts, depth=depth)
    grid = [round(i * step, 6) for i in range(round(1 / step) + 1)]
    values = {w: evaluate(qrels, rerank_scores(top, scores, interpolation=w), ["nDCG@10"]).metrics["nDCG@10"]
              for w in grid}
    weight = max(grid, key=lambda w: (values[w], w))
    return {"first_stage": evaluate(qrels, top, ["nDCG@10"]).metrics["nDCG@10"], "reranked": values[1.0],
            "interpolation": weight, "interpolated": values[weight], "queries": len(queries),
            "depth": depth}


def cap_queries(qrels: Qrels, limit: int, seed: int) -> Qrels:
    """A seeded sample of at most ``limit`` queries (dev evaluation during training stays cheap)."""
    if limit <= 0 or len(qrels) <= limit:
        return qrels
    ids = sorted(qrels)
    keep = sorted(np.random.default_rng([seed, 11]).choice(len(ids), size=limit, replace=False).tolist())
    return {ids[i]: qrels[ids[i]] for i in keep}


def train_and_dev(dataset: Dataset, config: Any) -> tuple[Qrels, Qrels]:
    """The training qrels and the dev qrels of a trainer config: ``dev_split`` if set, else the
    dataset's ``dev`` split, else a seeded ``dev_fraction`` of the training queries held out; at
    most ``dev_max_queries`` dev queries."""
    qrels = dataset.qrels(config.split)
    if config.dev_split:
        train_qrels, dev_qrels = qrels, dataset.qrels(config.dev_split)
    elif "dev" in dataset.splits and config.split != "dev":
        train_qrels, dev_qrels = qrels, dataset.qrels("dev")
    else:
        train_qrels, dev_qrels = split_dev(qrels, config.dev_fraction, config.loop.seed)
    return train_qrels, cap_queries(dev_qrels, config.dev_max_queries, config.loop.seed)


def train_reranker(config: RerankerConfig, *, progress: bool = True, stop_after: int | None = None,
                   overwrite: bool = False, work: str | Path | None = None,
                   log: Callable[[str], None] | None = None) -> TrainReport:
    """Train a cross-encoder as ``config`` says and save it to ``config.out``.

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same command after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes).
    """
    import torch

    from pretriever.encoders.cross import Reranker
    from pretriever.evaluation.measures import evaluate

    out = Path(config.out)
    if out.exists() and not overwrite:
        raise PretrieverError(f"{out} already exists; choose another --out or pass --overwrite")
    work_dir = Path(work) if work else out.with_name(out.name + ".work")
    dataset = load_dataset(config.dataset)
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    wanted = {q: queries[q] for q in [*train_qrels, *dev_qrels]}
    depth = max(config.negatives.depth, config.dev_depth)
    run = first_stage_run(dataset, config.first_stage, wanted, depth, progress=progress)
    corpus_ids = dataset.corpus.ids
    texts = dataset.corpus.text_map()
    if not any(train_qrels.get(q) for q in run):
        raise ConfigError("the first stage retrieved nothing for the training queries")

    def epoch_examples(epoch: int) -> list[Example]:
        examples = build_examples(run, train_qrels, corpus_ids, config.negatives, epoch=epoch,
                                  seed=config.loop.seed)
        return examples[: config.max_examples] if config.max_examples else examples

    cache: dict[int, list[list[Example]]] = {}

    def batches(epoch: int) -> list[list[Example]]:
        if epoch not in cache:
            cache.clear()
            examples = epoch_examples(epoch)
            cache[epoch] = [examples[i : i + config.batch_size]
                            for i in range(0, len(examples) - config.batch_size + 1, config.batch_size)]
        return cache[epoch]

    torch.manual_seed(config.loop.seed)  # the new classifier head starts the same on every run
    reranker = Reranker(config.base, max_length=config.max_length, device=config.device,
                        backend="torch", precision="float32")
    model = reranker.st.transformers_model
    device = str(model.device)
    tokenizer = reranker.st.tokenizer
    group = 1 + config.negatives.hard + config.negatives.random

    def loss_fn(batch: list[Example], progress_epochs: float) -> Any:
        from pretriever.training.curriculum import curriculum_weight, group_easiness
        from pretriever.training.objectives.listwise import listwise_softmax
        from pretriever.training.objectives.pointwise import bce

        left, right = [], []
        for ex in batch:
            for doc_id in (ex.positive, *ex.negatives):
                left.append(queries[ex.query_id])
                right.append(texts[doc_id])
        features = tokenizer(left, right, padding=True, truncation=True, max_length=config.max_length,
                             return_tensors="pt").to(device)
        logits = model(**features).logits.view(len(batch), group)
        weights = None
        if config.curriculum:
            weights = torch.tensor([
                curriculum_weight(group_easiness(ex.positive_rank, ex.negative_ranks), progress_epochs,
                                  config.curriculum_epochs) for ex in batch], device=device)
        if config.loss == "listwise":
            return listwise_softmax(logits, weights)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return bce(logits, labels, None if weights is None else weights[:, None].expand_as(logits))

    dtype = autocast_dtype(config.precision, device)
    evaluate_fn = None
    if dev_qrels:
        dev_queries = {q: queries[q] for q in dev_qrels}
        dev_first = {q: run.get(q, {}) for q in dev_queries}

        def evaluate_fn() -> float:
            with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                enabled=dtype is not None):
                scores = reranker.score_run(dev_first, dev_queries, texts, depth=config.dev_depth)
            return evaluate(dev_qrels, scores, ["nDCG@10"]).metrics["nDCG@10"]

    fingerprint = {**to_dict(config), "out": None, "corpus_sha256": dataset.corpus.sha256}
    result = train_loop(model, batches, loss_fn, config.loop, work=work_dir, fingerprint=fingerprint,
                        evaluate=evaluate_fn, device=device, dtype=dtype, progress=progress,
                        stop_after=stop_after, batch_examples=lambda b: len(b) * group, log=log,
                        lr_scales={"classifier": config.head_lr_scale,
                                   f"{model.base_model_prefix}.pooler": config.head_lr_scale})
    report = TrainReport(out, result, len(train_qrels), len(dev_qrels), len(batches(0)) * config.batch_size)
    if not result.finished:
        return report
    selection: dict[str, Any] = {}
    if dev_qrels:
        selection = tune_interpolation(reranker, dev_first, dev_queries, dev_qrels, texts, config.dev_depth)
        reranker.interpolation = selection["interpolation"]
        reranker.interpolation_depth = config.dev_depth
        if log is not None or progress:
            (log or print)(f"dev nDCG@10: first stage {selection['first_stage']:.4f}, reranked "
                           f"{selection['reranked']:.4f}, interpolated {selection['interpolated']:.4f} "
                           f"(weight {selection['interpolation']})")
    provenance = {
        "training": {"config": to_dict(config), "dataset": dataset.name,
                     "corpus_sha256": dataset.corpus.sha256, "train_queries": len(train_qrels),
                     "dev_queries": sorted(dev_qrels),
                     "steps": result.steps, "losses": result.losses, "dev_history": result.history,
                     "best": result.best, "pairs_per_second": result.examples_per_second,
                     "dev_selection": selection},
    }
    reranker.save(out, overwrite=overwrite, provenance=provenance,
                  files={"training_config.json": json.dumps(to_dict(config), indent=2)})
    shutil.rmtree(work_dir, ignore_errors=True)
    return report

