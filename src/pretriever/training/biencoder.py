"""``train``: fine-tune a dense bi-encoder on labelled (query, relevant document) pairs.

Defaults are the setting measured best (benchmarks/RESULTS.md: SciFact dense 0.6457 -> 0.7149,
hybrid 0.7286 -> 0.7517): TAS-Balanced batches (Hofstätter et al. 2021) with one hard negative from
the top 100 of the BM25 + dense hybrid, three epochs at lr 2e-5.

Objectives (``training.objectives``): InfoNCE over in-batch and hard negatives (default),
margin-MSE distillation from teacher scores (a reranker folder, or a run file of scores such as
``pretriever score`` writes), or both summed. Negatives (``training.negatives.static``):
STAR's static hard negatives from any first stage mixed with random ones; ``hard=0, random=1``
is plain random-negative training. Options: an easy-to-hard curriculum (each epoch draws its
hard negatives from a window of first-stage ranks that moves from the deep half of the ranking to
the top), and loss-based sample reweighting (the highest- and lowest-loss shares of each batch
get weight 0: likely false negatives and already-solved samples). A dev set (the ``dev`` split,
else held-out training queries) is scored after each epoch by reranking its first-stage top
``dev_depth`` with the current model, and the best weights are kept. The result is a plain
sentence-transformers folder (prompts and pooling kept) with a manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.batching import unique_query_batches
from pretriever.training.embedding import embed as embed_texts
from pretriever.training.grad_cache import embedded_loss
from pretriever.training.loop import LoopConfig, LoopResult, autocast, autocast_dtype
from pretriever.training.lora import LoraConfig
from pretriever.training.negatives.static import Example, NegativeConfig, build_examples
from pretriever.training.splits import LabelledConfig, dev_reranking, train_and_dev
from pretriever.training.trainer import Job, Plan, Trainer
from pretriever.types import Run

LOSSES = ("infonce", "margin-mse", "both")
SAMPLINGS = ("star", "tasb", "adore")


@dataclass(frozen=True)
class TrainConfig(LabelledConfig):
    """Every setting of ``pretriever train`` (see ``--help`` for each)."""

    first_stage: str = "hybrid"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(hard=1, depth=100))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=3, lr=2e-5))
    loss: str = "infonce"
    sampling: str = "tasb"
    tasb_clusters: int = 0
    adore_every: int = 10
    teacher: str | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    query_max_length: int = 64
    temperature: float = 0.05
    reweight_high: float = 0.0
    reweight_low: float = 0.0
    grad_cache: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling '{self.sampling}'; choose one of {', '.join(SAMPLINGS)}")
        if self.sampling == "adore" and (self.loss != "infonce" or self.lora.enabled or self.adore_every < 1):
            raise ConfigError("ADORE trains the query encoder with InfoNCE against a fixed document "
                              "index: use loss = infonce, no LoRA, adore_every >= 1")
        if self.sampling == "tasb" and (self.negatives.hard != 1 or self.negatives.random):
            raise ConfigError("TAS-B (the default sampling) draws one balanced hard negative per query: set "
                              "negatives.hard = 1 and negatives.random = 0, or choose sampling star")
        if self.loss != "infonce" and not self.teacher:
            raise ConfigError(f"loss '{self.loss}' distils from a teacher: give teacher = a reranker "
                              "folder or a run file of teacher scores (`pretriever score`)")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if not 0 <= self.reweight_high < 0.5 or not 0 <= self.reweight_low < 0.5:
            raise ConfigError("reweight_high and reweight_low are shares of a batch in [0, 0.5)")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.grad_cache < 0 or (self.grad_cache and self.sampling == "adore"):
            raise ConfigError("grad_cache is a chunk size >= 0 (0: off); ADORE embeds queries only and "
                              "does not use it")


def reweight(losses: Any, high: float, low: float) -> Any:
    """Weights that drop the ``high`` share of highest-loss and ``low`` share of lowest-loss samples,
    rescaled to mean 1 over the batch (no weights when both are 0)."""
    import torch

    n = losses.shape[0]
    weights = torch.ones_like(losses)
    order = torch.argsort(losses.detach())
    n_low, n_high = int(low * n), int(high * n)
    if n_low:
        weights[order[:n_low]] = 0.0
    if n_high:
        weights[order[n - n_high :]] = 0.0
    return weights * (n / weights.sum().clamp(min=1.0))


def batch_docs(examples: list[Example]) -> list[str]:
    """The documents of a batch in the order they are embedded: each example's positive, then its
    negatives."""
    return [d for ex in examples for d in (ex.positive, *ex.negatives)]


def judged_relevant(qrels: dict, batch: list[Example], doc_ids: list[str]) -> Any:
    """[len(batch), len(doc_ids)]: True where a document is judged relevant to the example's query:
    the in-batch false negatives InfoNCE must not push away (frequent where queries share topics)."""
    import torch

    return torch.tensor([[qrels.get(ex.query_id, {}).get(d, 0) > 0 for d in doc_ids] for ex in batch])


def curriculum_negatives(config: NegativeConfig, epoch: int, epochs: int) -> NegativeConfig:
    """The negative window of ``epoch``: ranks from the deep half of the first stage at the start,
    the whole ranking at the last epoch (easy to hard)."""
    if epochs <= 1:
        return config
    share = 1.0 - epoch / (epochs - 1)
    skip = config.skip_top + int(share * (config.depth - config.skip_top) / 2)
    return replace(config, skip_top=min(skip, config.depth - 1))


def _teacher_scores(teacher: str, run: Run, qrels: dict, queries: dict, texts: Any, depth: int,
                    work: Path, progress: bool) -> Run:
    """Teacher scores for every positive and first-stage top-``depth`` candidate: read from a run
    file, or computed once with a reranker folder (cached in the work folder)."""
    from pretriever.encoders.cross import is_cross_encoder_folder
    from pretriever.runs import ranked, read_run, write_run

    path = Path(teacher).expanduser()
    if path.is_file():
        return read_run(path)[0]
    if not (path.is_dir() and (is_cross_encoder_folder(path) or (path / "manifest.json").is_file())):
        raise ConfigError(f"teacher '{teacher}' is neither a run file nor a reranker folder")
    cache = work / "teacher.trec"
    if cache.is_file():
        return read_run(cache)[0]
    from pretriever.encoders.cross import Reranker

    wanted: Run = {}
    for qid, grades in qrels.items():
        docs = {h.doc_id: 0.0 for h in ranked(run.get(qid, {}), depth)}
        docs.update({d: 0.0 for d, g in grades.items() if g > 0})
        wanted[qid] = docs
    scores = Reranker.load(path).score_run(wanted, queries, texts, progress=progress)
    work.mkdir(parents=True, exist_ok=True)
    write_run(cache, scores, name="teacher")
    return read_run(cache)[0]  # the rounding of the file, whether computed now or resumed


def teacher_scored(run: Run, qrels: dict, teacher: Run) -> tuple[Run, dict, int]:
    """Negatives only among the pairs the teacher scored; positives without a score are skipped.
    Returns (run, qrels, positives skipped)."""
    run = {q: {d: s for d, s in docs.items() if d in teacher.get(q, {})} for q, docs in run.items()}
    kept = {q: {d: g for d, g in grades.items() if g <= 0 or d in teacher.get(q, {})}
            for q, grades in qrels.items()}
    return run, kept, sum(len(g) for g in qrels.values()) - sum(len(g) for g in kept.values())


def setup(job: Job) -> Plan:
    """The bi-encoder, its examples (STAR or TAS-B batches over first-stage negatives), its loss
    (InfoNCE, margin-MSE from a teacher, or both), dev scoring by reranking the first stage, and
    data parallelism under torchrun."""
    import torch

    from pretriever.encoders.dense import DenseEncoder
    from pretriever.retrieval.spec import retrieve
    from pretriever.training import distributed

    config: TrainConfig = job.config
    dataset = job.dataset
    world = distributed.init_world(config.device or "cpu")
    if config.batch_size % world.size:
        raise ConfigError(f"batch_size {config.batch_size} must be a multiple of the {world.size} processes")
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    wanted = {q: queries[q] for q in [*train_qrels, *dev_qrels]}
    depth = max(config.negatives.depth, config.dev_depth)
    run, _, _ = retrieve(dataset, config.first_stage, queries=wanted, k=depth, model=config.first_stage_model,
                         progress=job.progress and world.main, work_dir=job.work / "first-stage")
    texts = dataset.corpus.text_map()
    teacher_scores: Run = {}
    skipped = 0
    first_stage = run  # dev evaluation always sees the whole first stage
    if config.loss != "infonce":
        if not world.main:
            distributed.barrier(world)  # process 0 scores the pairs once and caches them
        teacher_scores = _teacher_scores(str(config.teacher), run, train_qrels, queries, texts,
                                         config.negatives.depth, job.work, job.progress and world.main)
        if world.main:
            distributed.barrier(world)
        run, train_qrels, skipped = teacher_scored(run, train_qrels, teacher_scores)

    def epoch_examples(epoch: int) -> list[Example]:
        negatives = config.negatives
        if config.curriculum:
            negatives = curriculum_negatives(negatives, epoch, config.loop.epochs)
        examples = build_examples(run, train_qrels, dataset.corpus.ids, negatives, epoch=epoch,
                                  seed=config.loop.seed)
        return examples[: config.max_examples] if config.max_examples else examples

    clusters = None
    if config.sampling == "tasb":
        from pretriever.training.tasb import cluster_queries

        ids = sorted(train_qrels)
        vectors = DenseEncoder(config.base).encode_queries([queries[q] for q in ids], progress=job.progress)
        k = config.tasb_clusters or max(1, len(ids) // (2 * config.batch_size))
        clusters = cluster_queries(ids, vectors, k, config.loop.seed)

    cache: dict[int, list[list[Example]]] = {}

    def batches(epoch: int) -> list[list[Example]]:
        if epoch not in cache:
            if clusters is not None:
                from pretriever.training.tasb import tasb_batches

                drawn = tasb_batches(run, train_qrels, clusters, config.negatives, config.batch_size,
                                     epoch=epoch, seed=config.loop.seed,
                                     scores=teacher_scores or None).batches
                keep = max(1, config.max_examples // config.batch_size) if config.max_examples else None
                cache[epoch] = drawn[:keep]
            else:
                cache[epoch] = unique_query_batches(epoch_examples(epoch), config.batch_size)
        return cache[epoch]

    # the base's own max length is kept for the saved model: config.max_length only bounds the
    # training batches, so training short to save time does not truncate the model at search time
    encoder = DenseEncoder(config.base, backend="torch", precision="float32",
                           device=distributed.local_device(world, config.device))
    st = encoder.st
    if config.lora.enabled:
        from pretriever.training.lora import add_adapters

        st[0].model = add_adapters(st[0].model, config.lora)
    device = str(st.device)
    group = 1 + config.negatives.hard + config.negatives.random
    prompts = encoder.prompts
    normalize = encoder.normalize

    def embed(batch_texts: list[str], max_length: int) -> Any:
        return embed_texts(st, batch_texts, max_length, normalize=normalize)

    def batch_loss(batch: list[Example], q: Any, d: Any, everyone: list[Example]) -> Any:
        from pretriever.training.objectives.infonce import per_sample
        from pretriever.training.objectives.margin_mse import margin_mse

        weights = None
        total = 0.0
        if config.loss in ("infonce", "both"):
            losses = per_sample(q, distributed.gather(d, world), config.temperature, group,
                                offset=world.rank * len(batch) * group,
                                exclude=judged_relevant(train_qrels, batch, batch_docs(everyone)))
            if config.reweight_high or config.reweight_low:
                weights = reweight(losses, config.reweight_high, config.reweight_low)
            total = (losses * weights).mean() if weights is not None else losses.mean()
        if config.loss in ("margin-mse", "both"):
            t = torch.tensor([[teacher_scores[ex.query_id][doc] for doc in (ex.positive, *ex.negatives)]
                              for ex in batch], device=device)
            total = total + margin_mse(q, d, t, config.temperature, weights)
        return total

    def loss(full: list[Example], progress_epochs: float) -> Any:
        batch = full[world.rank :: world.size]  # this process's share of the global batch
        everyone = [ex for rank in range(world.size) for ex in full[rank :: world.size]]  # gathered order
        q_texts = [prompts["query"] + queries[ex.query_id] for ex in batch]
        d_texts = [prompts["document"] + texts[doc] for doc in batch_docs(batch)]
        return embedded_loss([(lambda t: embed(t, config.query_max_length), q_texts),
                              (lambda t: embed(t, config.max_length), d_texts)],
                             lambda reps: batch_loss(batch, *reps, everyone), config.grad_cache, device)

    dtype = autocast_dtype(config.precision, device)

    def dev_embed(batch_texts: list[str], side: str) -> Any:
        with autocast(device, dtype):
            return embed([prompts[side] + t for t in batch_texts],
                         config.query_max_length if side == "query" else config.max_length)

    evaluate_fn = dev_reranking(dev_qrels, queries, first_stage, config.dev_depth, texts,
                                dev_embed) if world.main else None

    def finalize(result: LoopResult) -> dict[str, Any]:
        if config.lora.enabled:
            from pretriever.training.lora import merge

            st[0].model = merge(st[0].model)
        return {}

    return Plan(model=st, batches=batches, loss=loss, save=encoder.save, base=encoder.source, device=device,
                counts={"train_queries": len(train_qrels), "dev_queries": len(dev_qrels),
                        "examples_per_epoch": len(batches(0)) * config.batch_size,
                        "skipped_without_teacher": skipped},
                details={"dev_query_ids": sorted(dev_qrels), "processes": world.size},
                evaluate=evaluate_fn, main=world.main, finalize=finalize,
                before_step=lambda params: distributed.average_gradients(params, world))


BIENCODER = Trainer("biencoder", TrainConfig, setup, command=("train",))
