"""``pretrain``: continued pre-training of a bi-encoder on a corpus, with no queries or labels.

Each task of ``config.tasks`` (a name in ``registry.TASKS``) turns the corpus into examples once
per epoch, seeded by (seed, epoch, task); with several tasks, each batch holds one task's examples
and the batches of all tasks are shuffled together. The model trains on the shared skeleton
(``training.trainer``: checkpoints, resume, bf16) and is saved as a plain sentence-transformers
folder whose manifest records the tasks and their options. Only ``dataset.corpus`` is read: the
trainer never opens a query or qrels file.

The defaults are the best zero-label recipe measured (benchmarks/RESULTS.md): the ``lexical``
task, 2,048 examples at lr 2e-5, and GradCache chosen from a memory estimate so that a step fits
in a laptop's memory whatever the corpus.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig, check_precision
from pretriever.training.pretrain._text import Doc, rng_for
from pretriever.training.pretrain.registry import TASKS
from pretriever.training.pretrain.task import Context, Student, Task
from pretriever.training.trainer import Job, Plan, Trainer, TrainingReport, fit

# One lexical step without GradCache, CPU, fp32, MiniLM (384 wide, 6 layers): 32 examples x 16
# documents x 128 tokens = 65,536 document tokens peaked at 23.5 GB, 1e9 bytes (benchmarks/RESULTS.md).
GB_PER_TOKEN_LAYER_WIDTH = 23.5 / (65_536 * 6 * 384)
# What one step's activations may take before GradCache splits it: with the model, the teacher and
# the corpus the default recipe then peaks well under 8 GB (measured in benchmarks/RESULTS.md).
STEP_BUDGET_GB = 2.5


def _task_table() -> Mapping[str, type[Task]]:
    return TASKS


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of ``pretriever pretrain`` (see ``--help``). A task's own options are nested
    under its name: ``options["lexical"]`` in Python, ``[lexical]`` in a TOML file, ``--set
    lexical.weight=3`` on the command line; tasks not given options get their defaults."""

    dataset: str
    out: str
    tasks: str = "lexical"
    base: str = "minilm"
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=1, lr=2e-5))
    batch_size: int = 32
    max_length: int = 128
    query_max_length: int = 64
    max_examples: int | None = 2048  # per task and epoch; None: one per document that yields one
    temperature: float = 0.05
    idf_pooling: float = 0.0  # 0: the base's mean pooling; p > 0: tokens weighted by (IDF / mean)^p
    grad_cache: int | None = None  # None: from the memory estimate; 0: off; N: embed N texts at a time
    precision: str = "auto"
    device: str | None = None
    lenient: bool = False
    options: dict[str, Any] = field(default_factory=dict, metadata={"plugins": _task_table})

    def __post_init__(self) -> None:
        check_precision(self.precision)
        tasks = self.task_list
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"unknown pre-training task(s) {', '.join(unknown) or '(none given)'}; "
                              f"choose from {', '.join(TASKS)} (comma-separated)")
        if len(set(tasks)) != len(tasks):
            raise ConfigError(f"each task once, got {self.tasks!r}")
        for task in tasks:
            clash = set(getattr(TASKS[task], "excludes", ())) & set(tasks)
            if clash:
                raise ConfigError(f"{task} already includes {', '.join(sorted(clash))}: give one of them")
        stray = sorted(set(self.options) - set(tasks))
        if stray:
            raise ConfigError(f"options given for {', '.join(stray)}, which is not among tasks "
                              f"{self.tasks!r}: add it to tasks or drop its options")
        filled = {}
        for task in tasks:
            given = self.options.get(task)
            options_type = TASKS[task].Options
            if given is None:
                given = options_type()
            elif isinstance(given, Mapping):
                from pretriever.training.config import fill

                given = fill(options_type, dict(given), where=f"{task} options")
            elif not isinstance(given, options_type):
                raise ConfigError(f"options of {task} must be {task}'s Options or a table of settings")
            filled[task] = given
        object.__setattr__(self, "options", filled)
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.max_examples is not None and self.max_examples < self.batch_size:
            raise ConfigError(f"max_examples ({self.max_examples}) must be at least batch_size")
        if self.idf_pooling < 0:
            raise ConfigError(f"idf_pooling must be 0 (off) or a positive power, got {self.idf_pooling}")
        if self.grad_cache is not None and self.grad_cache < 0:
            raise ConfigError(f"grad_cache is a chunk size >= 0 (0: off), got {self.grad_cache}")
        if self.grad_cache and not any(TASKS[t].splits_batches for t in tasks):
            raise ConfigError(f"grad_cache applies to tasks that embed whole texts "
                              f"({', '.join(n for n, t in TASKS.items() if t.splits_batches)}); none of "
                              f"{self.tasks!r} does: drop grad_cache or lower batch_size to save memory")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")

    @property
    def task_list(self) -> tuple[str, ...]:
        return tuple(t.strip().lower() for t in self.tasks.split(",") if t.strip())


def corpus_docs(corpus: Any) -> list[Doc]:
    """The corpus as the tasks see it (a missing title is the empty string)."""
    return [Doc(i, t or "", x) for i, t, x in zip(corpus.ids, corpus.titles, corpus.texts, strict=True)]


def step_gb(tokens: int, layers: int = 6, width: int = 384) -> float:
    """Roughly the activation memory of back-propagating ``tokens`` tokens at once: it grows with
    the tokens and with the model's depth and width (scaled from one measurement)."""
    return tokens * layers * width * GB_PER_TOKEN_LAYER_WIDTH


def largest_step(config: PretrainConfig, tasks: list[Task]) -> int:
    """The tokens the largest step of ``tasks`` back-propagates at once (without GradCache)."""
    return max(t.tokens_per_step(config.batch_size, config.max_length, config.query_max_length)
               for t in tasks)


def grad_cache_chunk(config: PretrainConfig, tasks: list[Task], layers: int, width: int,
                     budget: float = STEP_BUDGET_GB) -> int:
    """The GradCache chunk (texts embedded at a time; 0: the whole batch): ``config.grad_cache``
    when given, else 0 when the largest step fits ``budget`` GB, else the most document-length texts
    that fit it."""
    if config.grad_cache is not None:
        return config.grad_cache
    split = [t for t in tasks if t.splits_batches]
    if not split:
        return 0
    if step_gb(largest_step(config, split), layers, width) <= budget:
        return 0
    return max(1, int(budget / step_gb(config.max_length, layers, width)))


def step_budget_gb(device: str) -> float:
    """What a step may take: ``STEP_BUDGET_GB`` on a CPU, whatever its RAM (the default recipe must
    fit a laptop), a quarter of a GPU's memory (where GradCache's second pass would only cost time)."""
    if device.startswith("cuda"):
        return max(STEP_BUDGET_GB, 0.25 * (memory_gb(device) or 0.0))
    return STEP_BUDGET_GB


def memory_gb(device: str) -> float | None:
    """The RAM (CPU) or GPU memory this run has, None where it cannot be told."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory / 1e9
    if device == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return None


def setup(job: Job) -> Plan:
    """Build the tasks (teachers, language models), the student and its heads, and the batches."""
    import torch

    from pretriever.encoders.backends import resolve_model
    from pretriever.encoders.dense import DenseEncoder

    config: PretrainConfig = job.config
    corpus = job.dataset.corpus  # the only file read: no queries, no qrels
    docs = corpus_docs(corpus)
    base = config.base
    if config.idf_pooling:  # teacher and student both start from the IDF-pooled base
        from pretriever.encoders.idf_pooling import save_idf_pooled

        base = str(save_idf_pooled(config.base, corpus.contents(), job.work / "idf-base",
                                   power=config.idf_pooling, device=config.device))
    context = Context(docs, corpus, base, config.loop.seed, config.batch_size, config.max_length,
                      config.query_max_length, config.max_examples, config.temperature, job.work,
                      job.progress)
    tasks = {name: TASKS[name](config.options[name], context) for name in config.task_list}
    encoder = DenseEncoder(base, backend="torch", precision="float32", device=config.device)
    st = encoder.st
    device = str(st.device)
    shape = st[0].auto_model.config
    chunk = grad_cache_chunk(config, list(tasks.values()), shape.num_hidden_layers, shape.hidden_size,
                             step_budget_gb(device))
    if chunk == 0:
        tokens = largest_step(config, list(tasks.values()))
        need, have = step_gb(tokens, shape.num_hidden_layers, shape.hidden_size), memory_gb(device)
        if have and need > 0.6 * have:  # a rough estimate on a machine shared with the OS: warn early
            job.log(f"warning: a step back-propagates about {tokens:,} tokens at once: about {need:.0f} GB, "
                    f"and this {device} has {have:.0f} GB; leave grad_cache unset (automatic) or lower "
                    f"batch_size if it runs out of memory")
    student = Student(st, None, encoder.prompts, encoder.normalize, device, config.max_length,
                      config.query_max_length, config.temperature, chunk)
    heads: dict[str, Any] = {}
    for task in tasks.values():
        for name, make in task.heads(student).items():
            if name not in heads:
                heads[name] = make()

    class Model(torch.nn.Module):  # one module, so checkpoints hold the heads and the queue too
        def __init__(self) -> None:
            super().__init__()
            self.st = st
            self.heads = torch.nn.ModuleDict(heads)

    model = Model().to(device)
    student.heads = model.heads
    cache: dict[int, list[tuple[str, list[Any], int]]] = {}
    counts: dict[str, int] = {}

    def batches(epoch: int) -> list[tuple[str, list[Any], int]]:
        if epoch not in cache:
            out: list[tuple[str, list[Any]]] = []
            for name, task in tasks.items():
                examples = task.examples(epoch)
                order = task.order(examples, rng_for(config.loop.seed, epoch, name + ":order"))
                picked = [examples[i] for i in order][: config.max_examples or None]
                if epoch == 0:  # the report's per-epoch counts (train_loop lists epoch 0 first)
                    counts[name] = len(picked)
                if len(picked) < 2:
                    raise ConfigError(f"task {name} drew {len(picked)} examples from {len(docs)} documents: "
                                      f"{task.needs}; choose other tasks for this corpus")
                task.check(len(picked))
                cuts = range(0, len(picked), config.batch_size)
                out += [(name, picked[i : i + config.batch_size]) for i in cuts
                        if len(picked[i : i + config.batch_size]) >= 2]
            mix = rng_for(config.loop.seed, epoch, "mix").permutation(len(out))
            seeds = rng_for(config.loop.seed, epoch, "masks").integers(0, 2**62, len(out))
            cache[epoch] = [(*out[i], int(seeds[n])) for n, i in enumerate(mix)]
        return cache[epoch]

    def loss(batch: tuple[str, list[Any], int], progress_epochs: float) -> Any:
        name, examples, seed = batch
        return tasks[name].loss(student, examples, torch.Generator().manual_seed(seed))

    def on_step(step: int) -> None:
        for task in tasks.values():
            task.after_step(student)

    return Plan(model=model, batches=batches, loss=loss, save=encoder.save, base=resolve_model(config.base),
                device=device, counts={"documents": len(docs), "examples_per_epoch": counts},
                batch_examples=lambda b: len(b[1]), on_step=on_step,
                details={"tasks": list(tasks), "grad_cache": chunk})


PRETRAINER = Trainer("pretrain", PretrainConfig, setup, command=("pretrain",), provenance_key="pretraining",
                     config_file="pretraining_config.json")


def pretrain(config: PretrainConfig, *, progress: bool = True, stop_after: int | None = None,
             overwrite: bool = False, work: Any = None, log: Any = None) -> TrainingReport:
    """Pre-train ``config.base`` on the corpus of ``config.dataset`` and save it to ``config.out``.

    Rerun the same call after a kill to resume from ``work`` (default ``OUT.work``).
    """
    return fit(PRETRAINER, config, progress=progress, stop_after=stop_after, overwrite=overwrite, work=work,
               log=log)


def examples_summary(report: TrainingReport) -> str:
    """'ict 2048, bfs 2048' for the CLI."""
    return ", ".join(f"{task} {n}" for task, n in report.counts.get("examples_per_epoch", {}).items())
