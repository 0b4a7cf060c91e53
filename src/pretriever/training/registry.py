"""Every trainer by name, and ``train``: the bi-encoder trainer a ``TrainConfig`` asks for.

Adding a trainer is one module with its config dataclass and ``setup(job) -> Plan`` (see
``training.trainer``), plus one entry here; ``benchmarks/sweep.py`` runs any of them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pretriever.training.adore import ADORE
from pretriever.training.biencoder import BIENCODER, TrainConfig
from pretriever.training.colbert import COLBERT
from pretriever.training.pretrain.pretrainer import PRETRAINER
from pretriever.training.reranker import RERANKER
from pretriever.training.sparse import SPARSE, SPARSE_PRETRAINER
from pretriever.training.trainer import Trainer, TrainingReport, fit

TRAINERS: dict[str, Trainer] = {
    t.name: t for t in (BIENCODER, ADORE, RERANKER, PRETRAINER, COLBERT, SPARSE, SPARSE_PRETRAINER)
}


def train(config: TrainConfig, *, progress: bool = True, stop_after: int | None = None,
          overwrite: bool = False, work: str | Path | None = None,
          log: Callable[[str], None] | None = None) -> TrainingReport:
    """Fine-tune a bi-encoder as ``config`` says and save it to ``config.out``: STAR or TAS-B
    batches, or with ``sampling = "adore"`` the ADORE trainer, which also writes the document index
    it trained against.

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same call after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes).
    """
    trainer = ADORE if config.sampling == "adore" else BIENCODER
    return fit(trainer, config, progress=progress, stop_after=stop_after, overwrite=overwrite, work=work,
               log=log)
