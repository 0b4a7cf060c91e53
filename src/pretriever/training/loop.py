"""The training loop every pretriever trainer runs: AdamW with linear warm-up and decay, bf16
autocast where the hardware computes it, checkpoints that resume to the same result, dev
evaluation with the best weights kept, and progress with loss and steps/s.

Why our own loop rather than the transformers Trainer that sentence-transformers builds on: the
trainers here change their data as training goes (negatives drawn per epoch, curriculum weights
that follow training progress, negatives re-mined with the current model), and a resumed run must
give the same weights as an uninterrupted one. Both are a few lines in a loop we own and a
fight with callbacks and dataloader replay in one we do not. The models stay sentence-transformers
models, saved by sentence-transformers.

Resume contract: with the same config and data, a run stopped after a checkpoint (killed, or
``stop_after``) and started again gives the same final weights as a run never stopped: the
checkpoint holds the model, optimizer, scheduler, step and RNG state, and each epoch's batches
are a pure function of (seed, epoch).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever._io import atomic_dir
from pretriever.errors import ConfigError

CHECKPOINT = "checkpoint"
BEST = "best.pt"


@dataclass(frozen=True)
class LoopConfig:
    """Optimisation settings shared by every trainer."""

    epochs: int = 1
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    checkpoint_steps: int = 200
    eval_steps: int = 0  # 0: evaluate at the end of each epoch
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.checkpoint_steps < 1 or self.eval_steps < 0:
            raise ConfigError("checkpoint_steps must be >= 1 and eval_steps >= 0")


@dataclass
class LoopResult:
    """What happened: steps run, the loss curve (per checkpoint interval), dev history (step 0 is
    the starting model), timing."""

    steps: int
    total_steps: int
    finished: bool
    resumed_from: int
    seconds: float
    examples: int
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


TRAINING_PRECISIONS = ("auto", "float32", "bfloat16")


def check_precision(choice: str) -> None:
    """Refuse a training precision other than auto, float32 or bfloat16 (before any work)."""
    if choice not in TRAINING_PRECISIONS:
        raise ConfigError(f"training precision must be {', '.join(TRAINING_PRECISIONS)}, not '{choice}'")


def autocast_dtype(choice: str, device: str) -> Any:
    """torch dtype for autocast: bf16 on a CPU that computes it natively or on a GPU that has it."""
    import torch

    check_precision(choice)
    if choice == "float32":
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    from pretriever.encoders.openvino import cpu_has_bf16

    return torch.bfloat16 if choice == "bfloat16" or cpu_has_bf16() else None


def autocast(device: str, dtype: Any) -> Any:
    """The autocast context for ``autocast_dtype``'s choice on ``device`` (off when it is None)."""
    import torch

    return torch.autocast(device_type=device.split(":")[0], dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None)


def train_loop(
    model: Any,
    batches: Callable[[int], Sequence[Any]],
    loss_fn: Callable[[Any, float], Any],
    config: LoopConfig,
    *,
    work: Path,
    fingerprint: dict[str, Any],
    evaluate: Callable[[], float] | None = None,
    device: str = "cpu",
    dtype: Any = None,
    progress: bool = True,
    stop_after: int | None = None,
    batch_examples: Callable[[Any], int] = len,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    before_step: Callable[[list[Any]], None] | None = None,
    main: bool = True,
    lr_scales: dict[str, float] | None = None,
) -> LoopResult:
    """Train ``model`` (a torch module) in place.

    ``batches(epoch)`` lists the epoch's batches (counts may differ by epoch); ``loss_fn(batch,
    epoch_progress)`` returns the scalar loss (detached if it back-propagated itself, as GradCache
    does). ``work`` keeps the checkpoint and the best weights;
    a checkpoint made with another ``fingerprint`` (the trainer's resolved config) is refused.
    ``evaluate()`` returns a dev score (higher is better), measured before training too; the best
    weights are loaded into the model at the end, the starting ones if training never beat them.
    ``stop_after`` stops after that many steps in total (time-boxed jobs; a later
    call resumes). ``on_step(step)`` runs after every optimizer step (e.g. re-mining negatives).
    ``progress`` shows a bar (a line per 10% in logs) with the loss, and a line at each dev
    evaluation and checkpoint; ``log(line)`` receives what a user must see even without progress
    output (a resumed run, the starting weights kept). ``before_step(params)`` runs between
    backward and the optimizer step (gradient averaging across processes); only the ``main``
    process writes checkpoints.
    ``lr_scales`` multiplies the learning rate of parameters whose name starts with a key (a new
    head learns faster than the pre-trained body it sits on).
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    from pretriever._progress import Progress

    work.mkdir(parents=True, exist_ok=True)
    counts = [len(batches(epoch)) for epoch in range(config.epochs)]
    if min(counts) == 0:
        raise ConfigError("no training batches: the training data is empty after filtering")
    starts = [sum(counts[:epoch]) for epoch in range(config.epochs)]
    total = sum(counts)
    torch.manual_seed(config.seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    groups: dict[tuple[bool, float], list[Any]] = {}
    for name, p in named:
        scale = next((v for k, v in (lr_scales or {}).items() if name.startswith(k)), 1.0)
        groups.setdefault((p.ndim > 1, scale), []).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": ps, "weight_decay": config.weight_decay if decays else 0.0, "lr": config.lr * scale}
         for (decays, scale), ps in sorted(groups.items(), key=lambda kv: kv[0])], lr=config.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total), total)
    result = LoopResult(0, total, False, 0, 0.0, 0)
    state = _load_checkpoint(work, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        result.steps = result.resumed_from = state["step"]
        result.losses, result.history, result.best = state["losses"], state["history"], state["best"]
    bar = Progress(total, "training", "steps", enabled=progress and main, initial=result.steps)
    say = bar.write

    def tell(line: str) -> None:  # what a user must see, progress output or not
        if bar.enabled:
            bar.write(line)
        elif main and log is not None:
            log(line)

    if result.resumed_from:
        tell(f"resumed from the checkpoint at step {result.resumed_from} of {total}")
    if evaluate is not None and result.steps == 0 and not result.history:
        # the starting point, so that training which makes the model worse is caught and undone
        model.eval()
        entry = {"step": 0, "epoch": 0.0, "score": float(evaluate())}
        result.history.append(entry)
        result.best = entry
        _save_weights(model, work / BEST)
        say(f"step 0: dev {entry['score']:.4f} before training")
    started = time.perf_counter()
    running: list[float] = []
    model.train()
    while result.steps < total:
        epoch = max(e for e in range(config.epochs) if starts[e] <= result.steps)
        offset = result.steps - starts[epoch]
        epoch_batches = batches(epoch)
        per_epoch = counts[epoch]
        for batch in epoch_batches[offset:]:
            with autocast(device, dtype):
                loss = loss_fn(batch, epoch + offset / per_epoch)
            if loss.requires_grad:  # a loss_fn may run its own backward (GradCache) and return it detached
                loss.backward()
            if before_step is not None:
                before_step(params)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps += 1
            offset += 1
            result.examples += batch_examples(batch)
            running.append(float(loss.detach()))
            if on_step is not None:
                on_step(result.steps)
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{sum(running[-20:]) / len(running[-20:]):.4f}",
                            examples_s=f"{result.examples / max(elapsed, 1e-9):.1f}")
            bar.update(1)
            end_of_epoch = offset == per_epoch
            if evaluate is not None and ((config.eval_steps and result.steps % config.eval_steps == 0)
                                         or (not config.eval_steps and end_of_epoch)):
                model.eval()
                score = float(evaluate())
                model.train()
                entry = {"step": result.steps, "epoch": epoch + offset / per_epoch, "score": score}
                result.history.append(entry)
                if result.best is None or score > result.best["score"]:
                    result.best = entry
                    _save_weights(model, work / BEST)
                say(f"step {result.steps}: dev {score:.4f} (best {result.best['score']:.4f} "
                    f"at step {result.best['step']})")
            if result.steps % config.checkpoint_steps == 0 or result.steps == total or \
                    (stop_after is not None and result.steps >= stop_after):
                result.losses.append(sum(running) / max(len(running), 1))
                running = []
                if main:
                    _save_checkpoint(work, fingerprint, model, optimizer, scheduler, result)
                elapsed = time.perf_counter() - started
                say(f"step {result.steps}/{total}: loss {result.losses[-1]:.4f}, "
                    f"{result.examples / max(elapsed, 1e-9):.1f} examples/s, checkpoint saved")
            if stop_after is not None and result.steps >= stop_after and result.steps < total:
                bar.close()
                result.seconds = time.perf_counter() - started
                return result
    bar.close()
    result.seconds = time.perf_counter() - started
    result.finished = True
    if result.best is not None and (work / BEST).is_file():
        model.load_state_dict(torch.load(work / BEST, map_location="cpu", weights_only=True))
        if result.best["step"] == 0:
            tell(f"warning: training never beat the starting model on dev ({result.best['score']:.4f}); "
                 "the starting weights are kept")
    model.eval()
    return result


def _save_weights(model: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)


def _save_checkpoint(work: Path, fingerprint: dict[str, Any], model: Any, optimizer: Any,
                     scheduler: Any, result: LoopResult) -> None:
    import torch

    with atomic_dir(work / CHECKPOINT, overwrite=True) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                    "step": result.steps, "losses": result.losses, "history": result.history,
                    "best": result.best}, tmp / "state.pt")
        (tmp / "fingerprint.json").write_text(json.dumps(fingerprint, sort_keys=True, default=str),
                                              encoding="utf-8")


def _load_checkpoint(work: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    import torch

    folder = work / CHECKPOINT
    if not (folder / "state.pt").is_file():
        return None
    saved = json.loads((folder / "fingerprint.json").read_text(encoding="utf-8"))
    current = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(
            f"{work} holds a checkpoint of another training run (differs in {', '.join(diff)}); "
            f"delete {work} to start afresh, or rerun with the same settings to resume"
        )
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=False)

