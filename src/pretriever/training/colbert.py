"""``train-colbert``: fine-tune a late-interaction (ColBERT) model on labelled pairs (Khattab &
Zaharia 2020; Santhanam et al. 2022, ColBERTv2, for distillation).

The encoder starts from any encoder (``base``): a new linear projection to ``dim`` dimensions is
set to the top principal directions of the corpus's token vectors (``ColBERTEncoder.
init_projection``), so training starts from compressed zero-shot late interaction, not noise.
ColBERT's marker tokens and [MASK] query augmentation are options (``query_prefix``,
``document_prefix``, ``query_expansion``), off by default: the default is the setting measured.
Batches are the bi-encoder's (TAS-Balanced clusters by default, or STAR), with hard negatives from
a first stage. Loss: InfoNCE over MaxSim scores of in-batch and hard negatives (documents judged
relevant to a query are never its negatives), KL divergence to a teacher's score distribution over
each query's group ("kl"; ColBERTv2's distillation), or both summed. The teacher is a reranker
folder or a run file of scores (``pretriever score``). The dev split (else held-out training
queries) is reranked by MaxSim after each epoch and the best weights are kept. The result is a
folder in PyLate's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.biencoder import batch_docs, judged_relevant
from pretriever.training.loop import LoopConfig, autocast, autocast_dtype
from pretriever.training.negatives.static import Example, NegativeConfig, build_examples
from pretriever.training.splits import LabelledConfig, labelled_data
from pretriever.training.trainer import Job, Plan, Trainer, TrainingReport, fit

LOSSES = ("infonce", "kl", "both")
SAMPLINGS = ("tasb", "star")


@dataclass(frozen=True)
class ColBERTConfig(LabelledConfig):
    """Every setting of ``pretriever train-colbert``."""

    first_stage: str = "hybrid"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(hard=1, depth=100))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=3, lr=2e-5))
    max_length: int = 128  # training documents only: the saved model searches at the base's length
    loss: str = "infonce"
    sampling: str = "tasb"
    teacher: str | None = None
    dim: int = 128
    query_length: int = 32
    temperature: float = 1.0
    # ColBERT's marker tokens and [MASK] query augmentation: options, not measured here (RESULTS.md)
    query_prefix: str = ""
    document_prefix: str = ""
    query_expansion: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling '{self.sampling}'; choose one of {', '.join(SAMPLINGS)}")
        if self.sampling == "tasb" and (self.negatives.hard != 1 or self.negatives.random):
            raise ConfigError(
                "TAS-B draws one balanced hard negative per query: set negatives.hard = 1 "
                "and negatives.random = 0, or choose sampling star"
            )
        if self.loss != "infonce" and not self.teacher:
            raise ConfigError(
                f"loss '{self.loss}' distils from a teacher: give teacher = a reranker folder "
                "or a run file of teacher scores (`pretriever score`)"
            )
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.loss != "infonce" and self.negatives.random:
            raise ConfigError(
                f"loss '{self.loss}' needs a teacher score for every negative: random negatives "
                "have none; set negatives.random = 0"
            )
        for name, value, least in (("dim", self.dim, 1), ("query_length", self.query_length, 2)):
            if value < least:
                raise ConfigError(f"{name} must be at least {least}, got {value}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")


def maxsim_scores(queries: Any, query_keep: Any, documents: Any, document_keep: Any) -> Any:
    """[B, N] MaxSim of every query (B, Lq, d) with every document (N, Ld, d); ``*_keep`` are the
    boolean masks of the vectors that count (skip-listed and padding tokens do not)."""
    import torch

    sims = torch.einsum("bqd,ntd->bnqt", queries, documents)
    sims = sims.masked_fill(~document_keep[None, :, None, :], -1e4)
    return (sims.max(dim=-1).values * query_keep[:, None, :].to(sims.dtype)).sum(dim=-1)


def setup(job: Job) -> Plan:
    """The ColBERT encoder (a new, PCA-initialised projection for a plain base), TAS-B or STAR
    batches over first-stage negatives, InfoNCE and/or KL over MaxSim scores, dev reranking."""
    import torch

    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.evaluation.measures import evaluate
    from pretriever.runs import ranked

    config: ColBERTConfig = job.config
    dataset = job.dataset
    queries = dataset.queries
    data = labelled_data(job, config, distil=config.loss != "infonce")
    train_qrels, dev_qrels, texts = data.train_qrels, data.dev_qrels, data.texts
    run, first_stage, teacher, skipped = data.candidates, data.first_stage, data.teacher, data.skipped

    clusters = None
    if config.sampling == "tasb":
        from pretriever.encoders.dense import DenseEncoder
        from pretriever.training.tasb import cluster_queries

        ids = sorted(train_qrels)
        vectors = DenseEncoder(config.first_stage_model).encode_queries([queries[q] for q in ids])
        clusters = cluster_queries(
            ids, vectors, max(1, len(ids) // (2 * config.batch_size)), config.loop.seed
        )
    cache: dict[int, list[list[Example]]] = {}

    def batches(epoch: int) -> list[list[Example]]:
        if epoch not in cache:
            keep = max(1, config.max_examples // config.batch_size) if config.max_examples else None
            if clusters is not None:
                from pretriever.training.tasb import tasb_batches

                cache[epoch] = tasb_batches(
                    run,
                    train_qrels,
                    clusters,
                    config.negatives,
                    config.batch_size,
                    epoch=epoch,
                    seed=config.loop.seed,
                    scores=teacher or None,
                ).batches[:keep]
            else:
                from pretriever.training.batching import unique_query_batches

                examples = build_examples(
                    run, train_qrels, dataset.corpus.ids, config.negatives, epoch=epoch, seed=config.loop.seed
                )
                cache[epoch] = unique_query_batches(examples, config.batch_size)[:keep]
        return cache[epoch]

    from pretriever.encoders.colbert import _projection_module

    fresh = _projection_module(ColBERTEncoder(config.base).folder) is None  # a plain encoder: new projection
    markers = (
        {
            "query_prefix": config.query_prefix,
            "document_prefix": config.document_prefix,
            "do_query_expansion": config.query_expansion,
        }
        if fresh
        else {}
    )  # else: the folder's own
    encoder = ColBERTEncoder(
        config.base,
        dim=config.dim if fresh else None,
        query_length=config.query_length,
        backend="torch",
        precision="float32",
        device=config.device,
        **markers,
    )
    if fresh:
        job.log(f"new {config.dim}-dim projection over {config.base}, set from the corpus's token vectors")
        encoder.init_projection(dataset.corpus.contents()[:256], seed=config.loop.seed)
    modules = encoder.modules
    device = str(next(modules.parameters()).device)

    def encode(texts: list[str], is_query: bool) -> tuple[Any, Any]:
        length = None if is_query else config.max_length
        features = encoder.tokenize(texts, is_query=is_query, length=length)
        return encoder.forward(features), torch.as_tensor(features["keep"], device=device)

    def loss(batch: list[Example], progress_epochs: float) -> Any:
        import torch.nn.functional as F

        q, q_keep = encode([queries[ex.query_id] for ex in batch], True)
        docs = batch_docs(batch)
        d, d_keep = encode([texts[doc] for doc in docs], False)
        scores = maxsim_scores(q, q_keep, d, d_keep) / config.temperature
        group = len(docs) // len(batch)
        total = 0.0
        if config.loss in ("infonce", "both"):
            target = torch.arange(len(batch), device=scores.device) * group
            exclude = judged_relevant(train_qrels, batch, docs).to(scores.device)
            exclude[torch.arange(len(batch)), target] = False
            total = F.cross_entropy(scores.masked_fill(exclude, float("-inf")), target)
        if config.loss in ("kl", "both"):
            own = torch.stack([scores[i, i * group : (i + 1) * group] for i in range(len(batch))])
            t = torch.tensor(
                [[teacher[ex.query_id][doc] for doc in (ex.positive, *ex.negatives)] for ex in batch],
                device=scores.device,
            )
            total = total + F.kl_div(
                F.log_softmax(own, dim=1),
                F.log_softmax(t.float(), dim=1),
                log_target=True,
                reduction="batchmean",
            )
        return total

    dtype = autocast_dtype(config.precision, device)
    evaluate_fn = None
    if dev_qrels:
        dev_queries = {q: queries[q] for q in dev_qrels}
        candidates = {
            q: [h.doc_id for h in ranked(first_stage.get(q, {}), config.dev_depth)] for q in dev_queries
        }
        doc_ids = sorted({d for docs in candidates.values() for d in docs})

        def evaluate_fn() -> float:
            from pretriever.encoders.colbert import maxsim

            if not doc_ids:
                return 0.0
            with torch.inference_mode(), autocast(device, dtype):
                qv = dict(zip(dev_queries, encoder.encode_queries(list(dev_queries.values()))))
                dv = dict(zip(doc_ids, encoder.encode_documents([texts[d] for d in doc_ids])))
            scored = {q: {d: maxsim(qv[q], dv[d]) for d in candidates[q]} for q in dev_queries}
            return evaluate(dev_qrels, scored, ["nDCG@10"]).metrics["nDCG@10"]

    return Plan(
        model=modules,
        batches=batches,
        loss=loss,
        save=encoder.save,
        base=encoder.source,
        device=device,
        counts={
            "train_queries": len(train_qrels),
            "dev_queries": len(dev_qrels),
            "examples_per_epoch": len(batches(0)) * config.batch_size,
            "skipped_without_teacher": skipped,
        },
        details={
            "dev_query_ids": sorted(dev_qrels),
            "projection": "new, PCA-initialised" if fresh else "the base's",
        },
        evaluate=evaluate_fn,
    )


COLBERT = Trainer("colbert", ColBERTConfig, setup, command=("train-colbert",))


def train_colbert(
    config: ColBERTConfig,
    *,
    progress: bool = True,
    stop_after: int | None = None,
    overwrite: bool = False,
    work: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Train a ColBERT model as ``config`` says and save it to ``config.out`` (PyLate's layout).

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same call after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes).
    """
    return fit(
        COLBERT, config, progress=progress, stop_after=stop_after, overwrite=overwrite, work=work, log=log
    )
