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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig, LoopResult, autocast, autocast_dtype
from pretriever.training.negatives.static import Example, NegativeConfig, build_examples
from pretriever.training.splits import LabelledConfig, train_and_dev
from pretriever.training.trainer import Job, Plan, Trainer, TrainingReport, fit
from pretriever.types import Qrels, Queries, Run

LOSSES = ("listwise", "bce")


@dataclass(frozen=True)
class RerankerConfig(LabelledConfig):
    """Every setting of ``pretriever train-reranker`` (see ``--help`` for each)."""

    loss: str = "listwise"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(hard=7, depth=100))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=1, lr=3e-5))
    batch_size: int = 4
    curriculum_epochs: float = 1.0
    head_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.batch_size < 1 or self.max_length < 16:
            raise ConfigError("batch_size >= 1 and max_length >= 16 are required")


def tune_interpolation(reranker: Any, first: Run, queries: Queries, qrels: Qrels, texts: Any,
                       depth: int, step: float = 0.1) -> dict[str, Any]:
    """The weight of the reranker's scores against the first stage's that scores best on held-out
    queries (ties: more reranker), with the first stage's and the pure reranker's scores there."""
    from pretriever.evaluation.measures import evaluate
    from pretriever.retrieval.pipeline import best_weight, interpolation_grid
    from pretriever.runs import sort_run

    top = sort_run(first, depth)
    values = interpolation_grid(top, reranker.score_run(top, queries, texts, depth=depth), qrels, step=step)
    weight = best_weight(values)
    return {"first_stage": evaluate(qrels, top, ["nDCG@10"]).metrics["nDCG@10"], "reranked": values[1.0],
            "interpolation": weight, "interpolated": values[weight], "queries": len(queries),
            "depth": depth}


def setup(job: Job) -> Plan:
    """The cross-encoder, its listwise (or BCE) loss over groups with hard negatives from the first
    stage, dev reranking after each epoch, and the interpolation weight tuned on dev at the end."""
    import torch

    from pretriever.encoders.cross import Reranker
    from pretriever.evaluation.measures import evaluate
    from pretriever.retrieval.spec import retrieve

    config: RerankerConfig = job.config
    dataset = job.dataset
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    wanted = {q: queries[q] for q in [*train_qrels, *dev_qrels]}
    depth = max(config.negatives.depth, config.dev_depth)
    run, _, _ = retrieve(dataset, config.first_stage, queries=wanted, k=depth, model=config.first_stage_model,
                         progress=job.progress, work_dir=job.work / "first-stage")
    corpus_ids = dataset.corpus.ids
    texts = dataset.corpus.text_map()
    if not any(train_qrels.get(q) for q in run):
        raise ConfigError("the first stage retrieved nothing for the training queries")
    cache: dict[int, list[list[Example]]] = {}

    def batches(epoch: int) -> list[list[Example]]:
        if epoch not in cache:
            examples = build_examples(run, train_qrels, corpus_ids, config.negatives, epoch=epoch,
                                      seed=config.loop.seed)[: config.max_examples or None]
            cache[epoch] = [examples[i : i + config.batch_size]
                            for i in range(0, len(examples) - config.batch_size + 1, config.batch_size)]
        return cache[epoch]

    reranker = Reranker(config.base, max_length=config.max_length, device=config.device,
                        backend="torch", precision="float32")
    model = reranker.st.transformers_model
    device = str(model.device)
    tokenizer = reranker.st.tokenizer
    group = 1 + config.negatives.hard + config.negatives.random

    def loss(batch: list[Example], progress_epochs: float) -> Any:
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
    dev_queries = {q: queries[q] for q in dev_qrels}
    dev_first = {q: run.get(q, {}) for q in dev_queries}
    evaluate_fn = None
    if dev_qrels:
        def evaluate_fn() -> float:
            with autocast(device, dtype):
                scores = reranker.score_run(dev_first, dev_queries, texts, depth=config.dev_depth)
            return evaluate(dev_qrels, scores, ["nDCG@10"]).metrics["nDCG@10"]

    def finalize(result: LoopResult) -> dict[str, Any]:
        """Tune the weight of the reranker's scores against the first stage's on the dev queries."""
        if not dev_qrels:
            return {"dev_selection": {}}
        selection = tune_interpolation(reranker, dev_first, dev_queries, dev_qrels, texts, config.dev_depth)
        reranker.interpolation = selection["interpolation"]
        reranker.interpolation_depth = config.dev_depth
        job.log(f"dev nDCG@10: first stage {selection['first_stage']:.4f}, reranked "
                f"{selection['reranked']:.4f}, interpolated {selection['interpolated']:.4f} "
                f"(weight {selection['interpolation']})")
        return {"dev_selection": selection}

    return Plan(model=model, batches=batches, loss=loss, save=reranker.save, base=reranker.source,
                device=device,
                counts={"train_queries": len(train_qrels), "dev_queries": len(dev_qrels),
                        "examples_per_epoch": len(batches(0)) * config.batch_size},
                details={"dev_query_ids": sorted(dev_qrels)}, evaluate=evaluate_fn,
                batch_examples=lambda b: len(b) * group, finalize=finalize,
                lr_scales={"classifier": config.head_lr_scale,
                           f"{model.base_model_prefix}.pooler": config.head_lr_scale})


RERANKER = Trainer("reranker", RerankerConfig, setup, command=("train-reranker",), model="cross-encoder")


def train_reranker(config: RerankerConfig, *, progress: bool = True, stop_after: int | None = None,
                   overwrite: bool = False, work: str | Path | None = None,
                   log: Callable[[str], None] | None = None) -> TrainingReport:
    """Train a cross-encoder as ``config`` says and save it to ``config.out``.

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same command after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes).
    """
    return fit(RERANKER, config, progress=progress, stop_after=stop_after, overwrite=overwrite, work=work,
               log=log)
