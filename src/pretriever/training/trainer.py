"""The skeleton every trainer runs on: prepare, the shared loop, finish.

A trainer (the bi-encoder, ADORE, the cross-encoder, pre-training, and the ones to come) writes one
function, ``setup(job) -> Plan``: the model to train, its batches, its loss, its dev score and how
it saves. Everything around that is written once, here:

- prepare: refuse an existing output (before minutes of work), choose the work folder
  (``OUT.work``: checkpoints and caches), read the dataset, seed torch, and fingerprint the run
  (the resolved config and the corpus checksum), so that a checkpoint of another run is refused
  instead of resumed;
- the loop (``loop.train_loop``): checkpoints, resume, bf16 autocast, dev score before and during
  training, the best weights kept (the starting ones if training never beat them);
- finish: save the model with its provenance (config, dataset, corpus checksum, what it started
  from, loss curve, dev history, speed, the trainer's own details) and the resolved config as a
  file beside it, then remove the work folder.

``fit(TRAINER, config)`` runs a trainer; ``registry.TRAINERS`` lists them by name.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever._io import fresh_output, work_folder
from pretriever.data.dataset import Dataset, load_dataset
from pretriever.errors import ConfigError
from pretriever.training.config import to_dict
from pretriever.training.loop import LoopResult, autocast_dtype, train_loop

_LOGGER = logging.getLogger("pretriever")


def _to_logging(line: str) -> None:
    """The default ``log`` of the Python API: the ``pretriever`` logger, warnings as warnings (they
    reach stderr even where the application configured no logging), the rest as info."""
    if line.startswith("warning"):
        _LOGGER.warning(line)
    else:
        _LOGGER.info(line)


@dataclass
class Job:
    """What prepare hands a trainer's ``setup``: its config, the dataset read, where to write.

    ``log`` receives messages a user must see even without progress output (warnings, a resumed
    run); ``progress`` switches bars and step lines on.
    """

    config: Any
    dataset: Dataset
    out: Path
    work: Path
    progress: bool
    log: Callable[[str], None]


@dataclass
class Plan:
    """What a trainer's ``setup`` returns: the model to train and everything the loop and the save
    need. ``save(path, *, overwrite, provenance, files)`` is the model's own save;
    ``finalize(result)`` runs after training, before the save (merge adapters, tune a weight) and
    returns details for the provenance; ``after_save()`` writes companion artefacts (ADORE's index).
    ``counts`` (queries, examples, documents...) go to the report and the provenance, ``details``
    to the provenance only."""

    model: Any
    batches: Callable[[int], Sequence[Any]]
    loss: Callable[[Any, float], Any]
    save: Callable[..., Path]
    base: str
    device: str
    counts: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    evaluate: Callable[[], float] | None = None
    batch_examples: Callable[[Any], int] = len
    on_step: Callable[[int], None] | None = None
    before_step: Callable[[list[Any]], None] | None = None
    lr_scales: dict[str, float] | None = None
    main: bool = True
    finalize: Callable[[LoopResult], dict[str, Any]] | None = None
    after_save: Callable[[], None] | None = None


@dataclass(frozen=True)
class Trainer:
    """A trainer: its name, its config class, its ``setup`` and the command line that runs it
    (``command``, for tools that run trainers as a user would). ``model`` says what it trains (a
    "bi-encoder", a "cross-encoder" or a "sparse" encoder), ``provenance_key`` names the manifest
    section it writes, ``config_file`` the file holding the resolved config, and
    ``outputs(config)`` every folder it creates (refused up front if one exists)."""

    name: str
    config: type
    setup: Callable[[Job], Plan]
    command: tuple[str, ...]
    model: str = "bi-encoder"
    provenance_key: str = "training"
    config_file: str = "training_config.json"
    outputs: Callable[[Any], list[Path]] = lambda config: [Path(config.out)]


@dataclass
class TrainingReport:
    """What a trainer produced: the model folder, the loop's record and the trainer's counts."""

    folder: Path
    loop: LoopResult
    counts: dict[str, Any] = field(default_factory=dict)


def fit(trainer: Trainer, config: Any, *, progress: bool = True, stop_after: int | None = None,
        overwrite: bool = False, work: str | Path | None = None,
        log: Callable[[str], None] | None = None) -> TrainingReport:
    """Run ``trainer`` as ``config`` says and save the model to ``config.out``.

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same call after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes); the model is saved
    only once training has finished.
    """
    import torch

    if not isinstance(config, trainer.config):
        raise ConfigError(f"the {trainer.name} trainer takes a {trainer.config.__name__}, not a "
                          f"{type(config).__name__}")
    out = Path(config.out)
    for path in trainer.outputs(config):
        fresh_output(path, overwrite)
    work_dir = work_folder(out, work)
    dataset = load_dataset(config.dataset, lenient=getattr(config, "lenient", False), progress=progress)
    job = Job(config, dataset, out, work_dir, progress, log or _to_logging)
    torch.manual_seed(config.loop.seed)  # new heads and dropout start the same on every run
    plan = trainer.setup(job)
    fingerprint = {**to_dict(config), "out": None, "corpus_sha256": dataset.corpus.sha256}
    result = train_loop(plan.model, plan.batches, plan.loss, config.loop, work=work_dir,
                        fingerprint=fingerprint, evaluate=plan.evaluate, device=plan.device,
                        dtype=autocast_dtype(config.precision, plan.device), progress=progress,
                        stop_after=stop_after, batch_examples=plan.batch_examples, log=job.log,
                        on_step=plan.on_step, before_step=plan.before_step, main=plan.main,
                        lr_scales=plan.lr_scales)
    report = TrainingReport(out, result, dict(plan.counts))
    if not result.finished or not plan.main:
        return report
    details = plan.finalize(result) if plan.finalize is not None else {}
    provenance = {trainer.provenance_key: {
        "trainer": trainer.name, "config": to_dict(config), "dataset": dataset.name,
        "corpus_sha256": dataset.corpus.sha256, "base": plan.base, **plan.counts,
        "steps": result.steps, "losses": result.losses, "dev_history": result.history,
        "best": result.best, "examples_per_second": result.examples_per_second,
        "seconds": result.seconds, **plan.details, **details,
    }}
    plan.save(out, overwrite=overwrite, provenance=provenance,
              files={trainer.config_file: json.dumps(to_dict(config), indent=2)})
    if plan.after_save is not None:
        plan.after_save()
    shutil.rmtree(work_dir, ignore_errors=True)
    return report
