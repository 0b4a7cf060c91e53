"""What every trainer on labelled pairs shares: its settings, and which queries it trains on and
which it holds out to choose weights.

The dev set is the ``dev_split`` the config names, else the dataset's ``dev`` split, else a
seeded share of the training queries held out from training; it is capped at a seeded sample of
``dev_max_queries`` so that scoring it after each epoch stays cheap. Test is never used:
``LabelledConfig`` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pretriever.data.dataset import Dataset
from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig, check_precision
from pretriever.training.negatives.static import NegativeConfig
from pretriever.types import Qrels


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
