"""``train``: fine-tune a dense bi-encoder on labelled (query, relevant document) pairs.

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

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.data.dataset import load_dataset
from pretriever.errors import ConfigError, PretrieverError
from pretriever.training.batching import unique_query_batches
from pretriever.training.config import to_dict
from pretriever.training.embedding import embed as embed_texts
from pretriever.training.grad_cache import embedded_loss
from pretriever.training.loop import LoopConfig, LoopResult, autocast_dtype, train_loop
from pretriever.training.lora import LoraConfig
from pretriever.training.negatives.static import Example, NegativeConfig, build_examples
from pretriever.training.reranker import first_stage_run, train_and_dev
from pretriever.types import Run

LOSSES = ("infonce", "margin-mse", "both")
SAMPLINGS = ("star", "tasb", "adore")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of ``pretriever train`` (see ``--help`` for each)."""

    dataset: str
    out: str
    split: str = "train"
    base: str = "minilm"
    loss: str = "infonce"
    first_stage: str = "bm25"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(hard=1, depth=100))
    sampling: str = "star"
    tasb_clusters: int = 0
    adore_every: int = 10
    teacher: str | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=1, lr=3e-5))
    batch_size: int = 32
    max_length: int = 256
    query_max_length: int = 64
    temperature: float = 0.05
    curriculum: bool = False
    reweight_high: float = 0.0
    reweight_low: float = 0.0
    dev_split: str | None = None
    dev_fraction: float = 0.1
    dev_depth: int = 30
    dev_max_queries: int = 100
    max_examples: int | None = None
    grad_cache: int = 0
    precision: str = "auto"
    device: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling '{self.sampling}'; choose one of {', '.join(SAMPLINGS)}")
        if self.sampling == "adore" and (self.loss != "infonce" or self.lora.enabled or self.adore_every < 1):
            raise ConfigError("ADORE trains the query encoder with InfoNCE against a fixed document "
                              "index: use loss = infonce, no LoRA, adore_every >= 1")
        if self.sampling == "tasb" and (self.negatives.hard != 1 or self.negatives.random):
            raise ConfigError("TAS-B draws one balanced hard negative per query: set negatives.hard = 1 "
                              "and negatives.random = 0")
        if self.loss != "infonce" and not self.teacher:
            raise ConfigError(f"loss '{self.loss}' distils from a teacher: give teacher = a reranker "
                              "folder or a run file of teacher scores (`pretriever score`)")
        if self.split == "test" or self.dev_split == "test":
            raise ConfigError("a model must not be trained or selected on the test split")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if not 0 <= self.reweight_high < 0.5 or not 0 <= self.reweight_low < 0.5:
            raise ConfigError("reweight_high and reweight_low are shares of a batch in [0, 0.5)")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.grad_cache < 0 or (self.grad_cache and self.sampling == "adore"):
            raise ConfigError("grad_cache is a chunk size >= 0 (0: off); ADORE embeds queries only and "
                              "does not use it")


@dataclass
class TrainReport:
    """What ``train`` produced."""

    folder: Path
    loop: LoopResult
    train_queries: int
    dev_queries: int
    examples_per_epoch: int
    skipped_without_teacher: int = 0


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


def train(config: TrainConfig, *, progress: bool = True, stop_after: int | None = None,
          overwrite: bool = False, work: str | Path | None = None,
          log: Callable[[str], None] | None = None) -> TrainReport:
    """Fine-tune a bi-encoder as ``config`` says and save it to ``config.out``.

    ``work`` (default ``OUT.work``) keeps the checkpoint: rerun the same call after a kill to
    resume. ``stop_after`` stops after that many steps (a later call resumes).
    """
    import torch

    from pretriever.encoders.dense import DenseEncoder
    from pretriever.evaluation.measures import evaluate
    from pretriever.training import distributed

    out = Path(config.out)
    if out.exists() and not overwrite:
        raise PretrieverError(f"{out} already exists; choose another --out or pass --overwrite")
    if config.sampling == "adore":
        return train_adore(config, progress=progress, stop_after=stop_after, overwrite=overwrite,
                           work=work, log=log)
    world = distributed.init_world(config.device or "cpu")
    work_dir = Path(work) if work else out.with_name(out.name + ".work")
    dataset = load_dataset(config.dataset)
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    wanted = {q: queries[q] for q in [*train_qrels, *dev_qrels]}
    depth = max(config.negatives.depth, config.dev_depth)
    run = first_stage_run(dataset, config.first_stage, wanted, depth, progress=progress)
    texts = dataset.corpus.text_map()
    teacher_scores: Run = {}
    skipped = 0
    first_stage = run  # dev evaluation always sees the whole first stage
    if config.loss != "infonce":
        if not world.main:
            distributed.barrier(world)  # process 0 scores the pairs once and caches them
        teacher_scores = _teacher_scores(str(config.teacher), run, train_qrels, queries, texts,
                                         config.negatives.depth, work_dir, progress and world.main)
        if world.main:
            distributed.barrier(world)
        # negatives only among pairs the teacher scored; positives without a score are skipped
        run = {q: {d: s for d, s in docs.items() if d in teacher_scores.get(q, {})}
               for q, docs in run.items()}
        kept = {q: {d: g for d, g in grades.items() if g <= 0 or d in teacher_scores.get(q, {})}
                for q, grades in train_qrels.items()}
        skipped = sum(len(g) for g in train_qrels.values()) - sum(len(g) for g in kept.values())
        train_qrels = kept

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
        vectors = DenseEncoder(config.base).encode_queries([queries[q] for q in ids])
        k = config.tasb_clusters or max(1, len(ids) // (2 * config.batch_size))
        clusters = cluster_queries(ids, vectors, k, config.loop.seed)

    cache: dict[int, list[list[Example]]] = {}

    def batches(epoch: int) -> list[list[Example]]:
        if epoch not in cache:
            cache.clear()
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

    if config.batch_size % world.size:
        raise ConfigError(f"batch_size {config.batch_size} must be a multiple of the {world.size} processes")
    torch.manual_seed(config.loop.seed)
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

    def loss_fn(full: list[Example], progress_epochs: float) -> Any:
        batch = full[world.rank :: world.size]  # this process's share of the global batch
        everyone = [ex for rank in range(world.size) for ex in full[rank :: world.size]]  # gathered order
        q_texts = [prompts["query"] + queries[ex.query_id] for ex in batch]
        d_texts = [prompts["document"] + texts[doc] for doc in batch_docs(batch)]
        return embedded_loss([(lambda t: embed(t, config.query_max_length), q_texts),
                              (lambda t: embed(t, config.max_length), d_texts)],
                             lambda reps: batch_loss(batch, *reps, everyone), config.grad_cache, device)

    dtype = autocast_dtype(config.precision, device)
    evaluate_fn = None
    if dev_qrels and world.main:
        from pretriever.runs import ranked

        dev_queries = {q: queries[q] for q in dev_qrels}
        candidates = {q: [h.doc_id for h in ranked(first_stage.get(q, {}), config.dev_depth)]
                      for q in dev_queries}
        doc_ids = sorted({d for docs in candidates.values() for d in docs})

        def evaluate_fn() -> float:
            if not doc_ids:  # the first stage found nothing for any dev query
                return 0.0
            with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0],
                                                        dtype=torch.bfloat16, enabled=dtype is not None):
                dev_texts = [prompts["query"] + t for t in dev_queries.values()]
                qv = torch.cat([embed(dev_texts[i : i + 64], config.query_max_length)
                                for i in range(0, len(dev_texts), 64)])
                dv = torch.cat([embed([prompts["document"] + texts[d] for d in doc_ids[i : i + 32]],
                                      config.max_length) for i in range(0, len(doc_ids), 32)])
            row = {d: i for i, d in enumerate(doc_ids)}
            sims = (qv.float() @ dv.float().T).cpu().numpy()
            scored = {q: {d: float(sims[i, row[d]]) for d in candidates[q]}
                      for i, q in enumerate(dev_queries)}
            return evaluate(dev_qrels, scored, ["nDCG@10"]).metrics["nDCG@10"]

    fingerprint = {**to_dict(config), "out": None, "corpus_sha256": dataset.corpus.sha256}
    result = train_loop(st, batches, loss_fn, config.loop, work=work_dir, fingerprint=fingerprint,
                        evaluate=evaluate_fn, device=device, dtype=dtype, progress=progress,
                        stop_after=stop_after, batch_examples=len, log=log, main=world.main,
                        before_step=lambda params: distributed.average_gradients(params, world))
    report = TrainReport(out, result, len(train_qrels), len(dev_qrels),
                         len(batches(0)) * config.batch_size, skipped)
    if not result.finished or not world.main:
        return report
    if config.lora.enabled:
        from pretriever.training.lora import merge

        st[0].model = merge(st[0].model)
    provenance = {"training": {
        "config": to_dict(config), "dataset": dataset.name, "corpus_sha256": dataset.corpus.sha256,
        "base": encoder.source, "train_queries": len(train_qrels), "dev_queries": sorted(dev_qrels),
        "steps": result.steps, "losses": result.losses, "dev_history": result.history,
        "best": result.best, "examples_per_second": result.examples_per_second,
        "skipped_without_teacher": skipped, "processes": world.size,
    }}
    encoder.save(out, overwrite=overwrite, provenance=provenance,
                 files={"training_config.json": json.dumps(to_dict(config), indent=2)})
    shutil.rmtree(work_dir, ignore_errors=True)
    return report



def adore_index_path(out: str | Path) -> Path:
    """Where ADORE saves the fixed document index paired with the trained query encoder."""
    out = Path(out)
    return out.with_name(out.name + "-index")


def train_adore(config: TrainConfig, *, progress: bool = True, stop_after: int | None = None,
                overwrite: bool = False, work: str | Path | None = None,
                log: Callable[[str], None] | None = None) -> TrainReport:
    """ADORE (Zhan et al. 2021): train the query encoder against a fixed document index, negatives
    re-mined with the current query encoder every ``adore_every`` steps.

    Writes the query encoder to ``config.out`` (a plain sentence-transformers folder) and the
    document index, with that query encoder recorded, to ``<out>-index``: search that index.
    """
    import torch

    from pretriever.encoders.dense import DenseEncoder
    from pretriever.evaluation.measures import evaluate
    from pretriever.indexes.dense import FlatIndex
    from pretriever.training.negatives.dynamic import DynamicNegatives
    from pretriever.training.objectives.infonce import infonce

    out = Path(config.out)
    index_out = adore_index_path(out)
    if index_out.exists() and not overwrite:
        raise PretrieverError(f"{index_out} already exists; choose another --out or pass --overwrite")
    work_dir = Path(work) if work else out.with_name(out.name + ".work")
    dataset = load_dataset(config.dataset)
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    # the fixed document index, encoded once by the starting model
    index = FlatIndex(DenseEncoder(config.base, max_length=config.max_length), progress=progress,
                      work_dir=work_dir / "encode").build(dataset.corpus)
    doc_row = {d: i for i, d in enumerate(dataset.corpus.ids)}
    doc_matrix = torch.from_numpy(np.ascontiguousarray(index.vectors, dtype=np.float32))

    torch.manual_seed(config.loop.seed)
    encoder = DenseEncoder(config.base, device=config.device, backend="torch", precision="float32")
    st = encoder.st
    device = str(st.device)
    prompt = encoder.prompts["query"]
    normalize = encoder.normalize
    dtype = autocast_dtype(config.precision, device)

    def embed(texts: list[str]) -> Any:
        return embed_texts(st, texts, config.query_max_length, normalize=normalize)

    def encode_now(ids: list[str]) -> np.ndarray:
        was_training = st.training
        st.eval()
        with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=dtype is not None):
            parts = [embed([prompt + queries[q] for q in ids[i : i + 128]]).float().cpu()
                     for i in range(0, len(ids), 128)]
        st.train(was_training)
        return torch.cat(parts).numpy()

    train_ids = sorted(train_qrels)
    miner = DynamicNegatives(index, train_qrels, depth=max(config.negatives.depth, config.negatives.hard))
    examples = [Example(q, d, (), None, ()) for q in train_ids
                for d in sorted(x for x, g in train_qrels[q].items() if g > 0 and x in doc_row)]

    def batches(epoch: int) -> list[list[Example]]:
        order = np.random.default_rng([config.loop.seed, epoch]).permutation(len(examples))
        picked = [examples[i] for i in order]
        return unique_query_batches(picked[: config.max_examples] if config.max_examples else picked,
                                    config.batch_size)

    def loss_fn(batch: list[Example], progress_epochs: float) -> Any:
        if not miner.pools:
            miner.refresh(train_ids, encode_now, 0)
        rows = []
        for ex in batch:
            negatives = miner.negatives(ex.query_id, config.negatives.hard)
            negatives += negatives[-1:] * (config.negatives.hard - len(negatives))  # rare: short pools
            rows.extend([doc_row[ex.positive], *(doc_row[d] for d in negatives)])
        q = embed([prompt + queries[ex.query_id] for ex in batch])
        docs = doc_matrix[rows].to(device)
        exclude = judged_relevant(train_qrels, batch, [dataset.corpus.ids[r] for r in rows])
        return infonce(q, docs, config.temperature, group=1 + config.negatives.hard, exclude=exclude)

    def on_step(step: int) -> None:
        if step % config.adore_every == 0:
            miner.refresh(train_ids, encode_now, step)

    evaluate_fn = None
    if dev_qrels:
        dev_ids = list(dev_qrels)

        def evaluate_fn() -> float:
            run = index.search_vectors(dev_ids, encode_now(dev_ids), 100)
            return evaluate(dev_qrels, run, ["nDCG@10"]).metrics["nDCG@10"]

    fingerprint = {**to_dict(config), "out": None, "corpus_sha256": dataset.corpus.sha256}
    result = train_loop(st, batches, loss_fn, config.loop, work=work_dir, fingerprint=fingerprint,
                        evaluate=evaluate_fn, device=device, dtype=dtype, progress=progress,
                        stop_after=stop_after, batch_examples=len, log=log, on_step=on_step)
    report = TrainReport(out, result, len(train_qrels), len(dev_qrels), len(batches(0)) * config.batch_size)
    if not result.finished:
        return report
    provenance = {"training": {
        "config": to_dict(config), "dataset": dataset.name, "corpus_sha256": dataset.corpus.sha256,
        "base": encoder.source, "method": "ADORE (query encoder against a fixed document index)",
        "document_index": str(index_out.resolve()), "train_queries": len(train_qrels),
        "dev_queries": sorted(dev_qrels), "steps": result.steps, "losses": result.losses,
        "dev_history": result.history, "best": result.best, "examples_per_second": result.examples_per_second,
        "remined_at_steps": miner.refreshed_at,
    }}
    encoder.save(out, overwrite=overwrite, provenance=provenance,
                 files={"training_config.json": json.dumps(to_dict(config), indent=2)})
    index.set_query_encoder(DenseEncoder.load(out), trained_for_documents=True)
    index.save(index_out, overwrite=overwrite)
    shutil.rmtree(work_dir, ignore_errors=True)
    return report
