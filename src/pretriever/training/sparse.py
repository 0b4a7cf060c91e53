"""``train --kind sparse`` and ``pretrain --kind sparse``: train a learned sparse encoder (SPLADE
or inference-free, ``encoders.sparse``) on the trainer skeleton.

- With labels (``SparseTrainConfig``): the bi-encoder's examples (a first stage's hard negatives,
  documents judged relevant never negatives, a query once per batch) and InfoNCE over the dot
  products of sparse vectors with in-batch and hard negatives (SPLADE's ranking loss), or
  margin-MSE from a teacher (a reranker folder or a run file of scores), or both.
- With no labels (``SparsePretrainConfig``): heterogeneous ensemble distillation (Geng et al. 2024,
  arXiv 2411.04403): pseudo-queries drawn from the corpus (a document's title or one of
  its sentences) are scored by the ``lexical`` pre-training task's teacher, the frozen dense model
  plus BM25 normalised per query and summed; the student learns the teacher's margins between its
  best candidate and the others (margin-MSE) and its distribution over every document of the
  batch (in-batch KL). Only the corpus is read.

Both add the FLOPS regulariser (``objectives.flops``) on documents, and on queries for SPLADE
(IDF-aware by default without labels, plain with labels: the settings measured best), its weight
ramped up quadratically over the first ``flops.warmup_ratio`` of training (SPLADE's schedule).
The MLM head of the bundled MiniLM is new (``encoders.sparse``), so it learns at
``head_lr_scale`` times the learning rate (a trained head learns at the learning rate). The dev
set (labelled only) is reranked by sparse dot products before training and after each epoch; the
best weights are kept. The result is a plain sentence-transformers sparse folder
(``SparseEncoder`` loads it) with a manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig, check_precision
from pretriever.training.negatives.static import Example, NegativeConfig
from pretriever.training.pretrain.lexical import Options as LexicalOptions
from pretriever.training.splits import LabelledConfig, labelled_data
from pretriever.training.trainer import Job, Plan, Trainer, TrainingReport, fit

LOSSES = ("infonce", "margin-mse", "both")


@dataclass(frozen=True)
class FlopsConfig:
    """The FLOPS regulariser: its weight on documents and (SPLADE only) on queries, the share of
    training over which the weights ramp up quadratically from 0, and whether each term's penalty
    is scaled down by its corpus IDF."""

    document: float = 3e-3
    query: float = 3e-3
    warmup_ratio: float = 0.3
    idf_aware: bool = True

    def __post_init__(self) -> None:
        if self.document < 0 or self.query < 0:
            raise ConfigError(f"flops weights must be >= 0, got document {self.document}, query {self.query}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ConfigError(f"flops.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")

    def weight(self, value: float, done: float) -> float:
        """The weight at ``done`` (share of training finished): value * min(1, done / warmup)^2."""
        if self.warmup_ratio == 0:
            return value
        return value * min(1.0, done / self.warmup_ratio) ** 2


def _check_sparse(kind: str, head_lr_scale: float, model_max_length: int) -> None:
    from pretriever.encoders.sparse import KINDS

    if kind not in KINDS:
        raise ConfigError(f"unknown sparse_kind '{kind}'; choose one of {', '.join(KINDS)}")
    if not head_lr_scale > 0:
        raise ConfigError(f"head_lr_scale must be positive, got {head_lr_scale}")
    if model_max_length < 8:
        raise ConfigError(f"model_max_length must be at least 8, got {model_max_length}")


@dataclass(frozen=True)
class SparseTrainConfig(LabelledConfig):
    """Every setting of ``pretriever train --kind sparse``."""

    sparse_kind: str = "inference-free"
    first_stage: str = "hybrid"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(hard=1, depth=100))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=2, lr=5e-5))
    max_length: int = 128  # training documents; the saved model encodes up to model_max_length
    model_max_length: int = 256
    query_max_length: int = 64
    loss: str = "infonce"
    teacher: str | None = None
    # plain FLOPS: on SciFact it beat the IDF-aware penalty on dev and test at the same weight
    # (with twice the FLOPS; benchmarks/RESULTS.md, "Learned sparse")
    flops: FlopsConfig = field(default_factory=lambda: FlopsConfig(idf_aware=False))
    head_lr_scale: float = 100.0
    dev_depth: int = 20
    dev_max_queries: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_sparse(self.sparse_kind, self.head_lr_scale, self.model_max_length)
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.curriculum:
            raise ConfigError(
                "curriculum applies to dense training; --kind sparse draws its negatives "
                "from the whole first-stage window every epoch"
            )
        if self.loss != "infonce" and not self.teacher:
            raise ConfigError(
                f"loss '{self.loss}' distils from a teacher: give teacher = a reranker "
                "folder or a run file of teacher scores (`pretriever score`)"
            )
        if self.loss != "infonce" and self.negatives.random:
            raise ConfigError(
                f"loss '{self.loss}' needs a teacher score for every negative: random "
                "negatives have none; set negatives.random = 0"
            )
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")


@dataclass(frozen=True)
class SparsePretrainConfig:
    """Every setting of ``pretriever pretrain --kind sparse`` (no labels: only the corpus is read).
    ``teacher_model`` is the dense half of the teacher; ``lexical`` its pseudo-queries, candidates
    and BM25 weight (the ``lexical`` task's options); ``temperature`` puts the teacher's cosine on
    the scale of its BM25 part; ``student_scale`` the student's dot products on the teacher's scale
    (unset: measured on the first batch)."""

    dataset: str
    out: str
    sparse_kind: str = "inference-free"
    base: str = "minilm"
    teacher_model: str = "minilm"
    lexical: LexicalOptions = field(default_factory=lambda: LexicalOptions(negatives=1))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=1, lr=5e-5))
    batch_size: int = 32
    max_length: int = 128
    model_max_length: int = 256
    query_max_length: int = 64
    max_examples: int | None = 2048
    temperature: float = 0.05
    student_scale: float | None = None  # None: measured on the first batch (see setup_unlabelled)
    flops: FlopsConfig = field(default_factory=FlopsConfig)
    head_lr_scale: float = 100.0
    precision: str = "auto"
    device: str | None = None
    lenient: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision)
        _check_sparse(self.sparse_kind, self.head_lr_scale, self.model_max_length)
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.max_examples is not None and self.max_examples < self.batch_size:
            raise ConfigError(f"max_examples ({self.max_examples}) must be at least batch_size")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.student_scale is not None and not self.student_scale > 0:
            raise ConfigError(
                f"student_scale must be positive (or unset: measured), got {self.student_scale}"
            )


class _Student:
    """The sparse encoder being trained: texts -> [N, vocabulary] term weights with gradients, the
    FLOPS penalty per term, and the new head's learning-rate scale."""

    def __init__(self, job: Job, config: Any) -> None:
        import torch

        from pretriever.encoders.sparse import SparseEncoder, idf_weights
        from pretriever.training.objectives.flops import idf_penalty

        contents = job.dataset.corpus.contents()
        self.config = config
        self.encoder = SparseEncoder(
            config.base, kind=config.sparse_kind, idf=contents, max_length=config.model_max_length
        )
        if self.encoder.sparse_kind != config.sparse_kind:
            raise ConfigError(
                f"{config.base} is a {self.encoder.sparse_kind} model: set sparse_kind = "
                f"{self.encoder.sparse_kind} to train it (a saved model keeps its kind)"
            )
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = self.encoder.model.to(device)
        self.device = str(next(self.model.parameters()).device)
        self.siamese = self.encoder.sparse_kind == "splade"
        self.penalty = None
        if config.flops.idf_aware:  # an inference-free model's query side holds the corpus IDF already
            idf = (
                self.encoder.query_weights()
                if not self.siamese and self.encoder.new_head
                else idf_weights(self.encoder.tokenizer, contents)
            )
            self.penalty = torch.as_tensor(idf_penalty(idf), device=self.device)
        self.lr_scales = {  # only a head initialised here learns faster, not a trained one
            name: config.head_lr_scale
            for name, _ in self.model.named_parameters()
            if self.encoder.new_head and ".cls.predictions." in f".{name}"
        }
        self.terms: list[float] = []

    def embed(self, texts: list[str], side: str) -> Any:
        from pretriever.training.embedding import embed

        length = self.config.query_max_length if side == "query" else self.config.max_length
        return embed(self.model, texts, length, normalize=False, task=side if not self.siamese else None)

    def regularised(self, ranking: Any, q: Any, d: Any, done: float) -> Any:
        """``ranking`` plus the FLOPS terms at ``done`` (share of training finished)."""
        from pretriever.training.objectives.flops import flops, used_terms

        flops_config = self.config.flops
        total = ranking + flops_config.weight(flops_config.document, done) * flops(d, self.penalty)
        if self.siamese:
            total = total + flops_config.weight(flops_config.query, done) * flops(q, self.penalty)
        self.terms.append(used_terms(d.detach()))
        return total

    def report(self, log: Callable[[str], None], every: int = 5) -> Callable[[int], None]:
        """An ``on_step`` that logs the documents' terms every ``every`` steps."""

        def on_step(step: int) -> None:
            if step % every == 0 and self.terms:
                recent = self.terms[-every:]
                log(f"step {step}: {sum(recent) / len(recent):,.0f} terms per training document")

        return on_step

    def plan(self, job: Job, batches: Callable[[int], Any], loss: Callable[..., Any], **fields: Any) -> Plan:
        """The trainer's ``Plan`` around this student (its model, save, head learning rate, the
        terms-per-document log and provenance), with ``fields`` (counts, details, evaluate) added."""
        return Plan(
            model=self.model,
            batches=batches,
            loss=loss,
            save=self.encoder.save,
            base=str(self.config.base),
            device=self.device,
            lr_scales=self.lr_scales,
            on_step=self.report(job.log) if job.progress else None,
            finalize=lambda result: self.details(),
            **fields,
        )

    def details(self) -> dict[str, Any]:
        recent = self.terms[-10:]
        return {
            "kind": self.encoder.sparse_kind,
            "flops_penalty": "idf-aware" if self.penalty is not None else "plain",
            "final_terms_per_document": round(sum(recent) / len(recent), 1) if recent else None,
        }


def _done(progress_epochs: float, epochs: int) -> float:
    return progress_epochs / max(epochs, 1)


def setup_labelled(job: Job) -> Plan:
    """The sparse student, STAR examples over the first stage's negatives (a query once per batch),
    InfoNCE and/or margin-MSE over sparse dot products plus FLOPS, dev reranking."""
    import torch

    from pretriever.training.batching import unique_query_batches
    from pretriever.training.biencoder import batch_docs, judged_relevant
    from pretriever.training.negatives.static import build_examples
    from pretriever.training.objectives.infonce import infonce
    from pretriever.training.objectives.margin_mse import margin_mse
    from pretriever.training.splits import dev_reranking

    config: SparseTrainConfig = job.config
    dataset = job.dataset
    queries = dataset.queries
    data = labelled_data(job, config, distil=config.loss != "infonce")
    train_qrels, dev_qrels, texts = data.train_qrels, data.dev_qrels, data.texts
    run, first_stage, teacher, skipped = data.candidates, data.first_stage, data.teacher, data.skipped
    cache: dict[int, list[list[Example]]] = {}

    def batches(epoch: int) -> list[list[Example]]:
        if epoch not in cache:
            examples = build_examples(
                run, train_qrels, dataset.corpus.ids, config.negatives, epoch=epoch, seed=config.loop.seed
            )
            keep = max(1, config.max_examples // config.batch_size) if config.max_examples else None
            cache[epoch] = unique_query_batches(examples, config.batch_size)[:keep]
        return cache[epoch]

    student = _Student(job, config)
    group = 1 + config.negatives.hard + config.negatives.random

    def loss(batch: list[Example], progress_epochs: float) -> Any:
        q = student.embed([queries[ex.query_id] for ex in batch], "query")
        d = student.embed([texts[doc] for doc in batch_docs(batch)], "document")
        ranking = 0.0
        if config.loss in ("infonce", "both"):
            ranking = infonce(
                q, d, 1.0, group=group, exclude=judged_relevant(train_qrels, batch, batch_docs(batch))
            )
        if config.loss in ("margin-mse", "both"):
            t = torch.tensor(
                [[teacher[ex.query_id][doc] for doc in (ex.positive, *ex.negatives)] for ex in batch],
                device=student.device,
            )
            ranking = ranking + margin_mse(q, d, t, 1.0)
        return student.regularised(ranking, q, d, _done(progress_epochs, config.loop.epochs))

    evaluate_fn = dev_reranking(dev_qrels, queries, first_stage, config.dev_depth, texts, student.embed)

    return student.plan(
        job,
        batches,
        loss,
        evaluate=evaluate_fn,
        counts={
            "train_queries": len(train_qrels),
            "dev_queries": len(dev_qrels),
            "examples_per_epoch": len(batches(0)) * config.batch_size,
            "skipped_without_teacher": skipped,
        },
        details={"dev_query_ids": sorted(dev_qrels)},
    )


def setup_unlabelled(job: Job) -> Plan:
    """The sparse student and the dense + BM25 teacher over pseudo-queries (no labels)."""
    import torch

    from pretriever.training.objectives.inbatch_kd import inbatch_kl
    from pretriever.training.objectives.margin_mse import margin_mse
    from pretriever.training.pretrain._text import rng_for
    from pretriever.training.pretrain.lexical import (
        LexicalTeacher,
        ScoredList,
        batch_order,
        epoch_docs,
        inbatch_targets,
        lexical_lists,
    )
    from pretriever.training.pretrain.pretrainer import corpus_docs

    config: SparsePretrainConfig = job.config
    corpus = job.dataset.corpus  # the only file read: no queries, no qrels
    docs = corpus_docs(corpus)
    options = config.lexical
    teacher = LexicalTeacher(
        corpus,
        config.teacher_model,
        weight=options.weight,
        temperature=config.temperature,
        depth=options.depth,
        max_length=config.max_length,
        work_dir=job.work / "teacher",
        progress=job.progress,
    )
    cache: dict[int, list[list[ScoredList]]] = {}

    def batches(epoch: int) -> list[list[ScoredList]]:
        if epoch not in cache:
            chosen = epoch_docs(docs, config.max_examples, config.loop.seed, epoch)
            lists = lexical_lists(
                chosen, teacher, negatives=options.negatives, seed=config.loop.seed, epoch=epoch
            )
            if len(lists) < 2:
                raise ConfigError(
                    f"the corpus yielded {len(lists)} pseudo-queries with enough candidates "
                    f"(a title or a sentence per document, {1 + options.negatives} candidates "
                    "each): it needs more documents"
                )
            rng = rng_for(config.loop.seed, epoch, "lexical:order")
            ordered = [lists[i] for i in batch_order(lists, config.batch_size, options.topic_batches, rng)]
            cuts = range(0, len(ordered), config.batch_size)
            cache[epoch] = [
                ordered[i : i + config.batch_size]
                for i in cuts
                if len(ordered[i : i + config.batch_size]) >= 2
            ]
        return cache[epoch]

    student = _Student(job, config)

    def inbatch(batch: list[ScoredList]) -> tuple[list[int], Any]:
        keep, scores = inbatch_targets(teacher, batch)
        return keep, torch.tensor(scores, device=student.device)

    def student_scale() -> float:
        """Teacher scores are cosines / temperature plus BM25 parts, the student's are dot products
        of term weights, several times larger: one factor, measured on the first batch with the
        starting model (the spread of the teacher's scores over the student's), puts the student
        on the teacher's scale for the margins and the in-batch distribution."""
        batch = batches(0)[0]
        keep, every = inbatch(batch)
        with torch.no_grad():
            q = student.embed([ex.query for ex in batch], "query")
            d = student.embed([t for ex in batch for t in ex.documents], "document")
            spread = float((q.float() @ d[keep].float().T).std())
        return float(every.float().std()) / spread if spread > 0 else 1.0

    scale = config.student_scale or student_scale()

    def loss(batch: list[ScoredList], progress_epochs: float) -> Any:
        q = student.embed([ex.query for ex in batch], "query")
        d = student.embed([t for ex in batch for t in ex.documents], "document")
        scores = torch.tensor([ex.scores for ex in batch], device=student.device)
        ranking = margin_mse(q, d, scores, 1.0 / scale)
        if options.inbatch:  # every distinct document of the batch, scored by the teacher
            keep, every = inbatch(batch)
            ranking = ranking + options.inbatch * inbatch_kl(q, d[keep], every, 1.0 / scale)
        return student.regularised(ranking, q, d, _done(progress_epochs, config.loop.epochs))

    return student.plan(
        job,
        batches,
        loss,
        counts={"documents": len(docs), "examples_per_epoch": sum(len(b) for b in batches(0))},
        details={
            "teacher": f"{config.teacher_model} + BM25 (weight {options.weight})",
            "student_scale": scale,
        },
    )


SPARSE = Trainer(
    "sparse", SparseTrainConfig, setup_labelled, command=("train", "--kind", "sparse"), model="sparse"
)
SPARSE_PRETRAINER = Trainer(
    "sparse-pretrain",
    SparsePretrainConfig,
    setup_unlabelled,
    command=("pretrain", "--kind", "sparse"),
    model="sparse",
    provenance_key="pretraining",
    config_file="pretraining_config.json",
)


def train_sparse(
    config: SparseTrainConfig | SparsePretrainConfig,
    *,
    progress: bool = True,
    stop_after: int | None = None,
    overwrite: bool = False,
    work: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Train a sparse encoder as ``config`` says (labelled pairs for a ``SparseTrainConfig``, the
    corpus alone for a ``SparsePretrainConfig``) and save it to ``config.out``.

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same call after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes).
    """
    trainer = SPARSE_PRETRAINER if isinstance(config, SparsePretrainConfig) else SPARSE
    return fit(
        trainer, config, progress=progress, stop_after=stop_after, overwrite=overwrite, work=work, log=log
    )
