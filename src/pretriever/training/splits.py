"""What every trainer on labelled pairs shares: its settings, and which queries it trains on and
which it holds out to choose weights.

The dev set is the ``dev_split`` the config names, else the dataset's ``dev`` split, else a
seeded share of the training queries held out from training; it is capped at a seeded sample of
``dev_max_queries`` so that scoring it after each epoch stays cheap. Test is never used:
``LabelledConfig`` refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pretriever.data.dataset import Dataset
from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig, check_precision
from pretriever.training.negatives.static import NegativeConfig
from pretriever.types import Qrels, Run


@dataclass(frozen=True)
class LabelledConfig:
    """The settings of a trainer on labelled (query, document) pairs: the data and its split, the
    model trained from, the first stage its negatives come from, the loop, and the dev set. Each
    trainer's config extends it (and may change its defaults)."""

    dataset: str
    out: str
    split: str = "train"
    base: str = "minilm"
    first_stage: str = "bm25"
    first_stage_model: str = "minilm"  # the bi-encoder of a dense or hybrid first stage built for it
    negatives: NegativeConfig = field(default_factory=NegativeConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    batch_size: int = 32
    max_length: int = 256
    curriculum: bool = False
    dev_split: str | None = None
    dev_fraction: float = 0.1
    dev_depth: int = 30
    dev_max_queries: int = 100
    max_examples: int | None = None
    precision: str = "auto"
    device: str | None = None
    lenient: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.split == "test" or self.dev_split == "test":
            raise ConfigError("a model must not be trained or selected on the test split")
        if not 0.0 <= self.dev_fraction < 0.5:
            raise ConfigError(f"dev_fraction must be in [0, 0.5), got {self.dev_fraction}")
        if self.dev_depth < 1:
            raise ConfigError(f"dev_depth must be at least 1, got {self.dev_depth}")


def split_dev(qrels: Qrels, fraction: float, seed: int) -> tuple[Qrels, Qrels]:
    """Hold out a seeded share of the queries: (train, dev)."""
    ids = sorted(qrels)
    n_dev = round(len(ids) * fraction)
    if n_dev == 0:
        return qrels, {}
    held = set(np.random.default_rng([seed, 7]).choice(len(ids), size=n_dev, replace=False).tolist())
    dev = {ids[i]: qrels[ids[i]] for i in sorted(held)}
    return {q: v for q, v in qrels.items() if q not in dev}, dev


def cap_queries(qrels: Qrels, limit: int, seed: int) -> Qrels:
    """A seeded sample of at most ``limit`` queries (dev evaluation during training stays cheap)."""
    if limit <= 0 or len(qrels) <= limit:
        return qrels
    ids = sorted(qrels)
    keep = sorted(np.random.default_rng([seed, 11]).choice(len(ids), size=limit, replace=False).tolist())
    return {ids[i]: qrels[ids[i]] for i in keep}


def train_and_dev(dataset: Dataset, config: Any) -> tuple[Qrels, Qrels]:
    """The training qrels and the dev qrels of a supervised trainer's config (``split``,
    ``dev_split``, ``dev_fraction``, ``dev_max_queries``, ``loop.seed``)."""
    qrels = dataset.qrels(config.split)
    if config.dev_split:
        train_qrels, dev_qrels = qrels, dataset.qrels(config.dev_split)
    elif "dev" in dataset.splits and config.split != "dev":
        train_qrels, dev_qrels = qrels, dataset.qrels("dev")
    else:
        train_qrels, dev_qrels = split_dev(qrels, config.dev_fraction, config.loop.seed)
    return train_qrels, cap_queries(dev_qrels, config.dev_max_queries, config.loop.seed)


def dev_reranking(dev_qrels: Qrels, queries: dict[str, str], first_stage: Run, depth: int,
                  texts: Any, embed: Callable[[list[str], str], Any]) -> Callable[[], float] | None:
    """The dev score of a bi-encoder (dense or sparse) during training: nDCG@10 of the first
    stage's top ``depth`` per dev query reranked by the dot products of ``embed(texts, side)``
    ("query" or "document"; gradients off). None without dev queries."""
    if not dev_qrels:
        return None
    from pretriever.runs import ranked

    dev_queries = {q: queries[q] for q in dev_qrels}
    candidates = {q: [h.doc_id for h in ranked(first_stage.get(q, {}), depth)] for q in dev_queries}
    doc_ids = sorted({d for docs in candidates.values() for d in docs})

    def score() -> float:
        import torch

        from pretriever.evaluation.measures import evaluate

        if not doc_ids:  # the first stage found nothing for any dev query
            return 0.0
        with torch.inference_mode():
            asked = list(dev_queries.values())
            qv = torch.cat([embed(asked[i : i + 64], "query") for i in range(0, len(asked), 64)])
            dv = torch.cat([embed([texts[d] for d in doc_ids[i : i + 32]], "document")
                            for i in range(0, len(doc_ids), 32)])
        row = {d: i for i, d in enumerate(doc_ids)}
        sims = (qv.float() @ dv.float().T).cpu().numpy()
        scored = {q: {d: float(sims[i, row[d]]) for d in candidates[q]} for i, q in enumerate(dev_queries)}
        return evaluate(dev_qrels, scored, ["nDCG@10"]).metrics["nDCG@10"]

    return score


@dataclass
class LabelledData:
    """What a trainer on labelled pairs starts from: the training and dev qrels, the first stage's
    run (``candidates``: negatives are drawn from it, restricted to teacher-scored pairs when a
    teacher is given; ``first_stage``: the whole run, for dev scoring), the teacher's scores, the
    positives skipped for want of one, and the corpus texts."""

    train_qrels: Qrels
    dev_qrels: Qrels
    candidates: Run
    first_stage: Run
    teacher: Run
    skipped: int
    texts: Any


def labelled_data(job: Any, config: Any, *, distil: bool) -> LabelledData:
    """Split the qrels (``train_and_dev``), run ``config.first_stage`` on the training and dev
    queries (cached in the work folder) and, when ``distil``, score the candidates with
    ``config.teacher``."""
    from pretriever.retrieval.spec import retrieve
    from pretriever.training.biencoder import _teacher_scores, teacher_scored

    dataset = job.dataset
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    wanted = {q: queries[q] for q in [*train_qrels, *dev_qrels]}
    run, _, _ = retrieve(dataset, config.first_stage, queries=wanted,
                         k=max(config.negatives.depth, config.dev_depth), model=config.first_stage_model,
                         progress=job.progress, work_dir=job.work / "first-stage")
    texts = dataset.corpus.text_map()
    teacher: Run = {}
    candidates, skipped = run, 0
    if distil:
        teacher = _teacher_scores(str(config.teacher), run, train_qrels, queries, texts,
                                  config.negatives.depth, job.work, job.progress)
        candidates, train_qrels, skipped = teacher_scored(run, train_qrels, teacher)
    return LabelledData(train_qrels, dev_qrels, candidates, run, teacher, skipped, texts)
