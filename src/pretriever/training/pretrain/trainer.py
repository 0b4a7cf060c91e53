"""``pretrain``: continued pre-training of a bi-encoder on a corpus, with no queries or labels.

Each task (``ict``, ``bfs``, ``cropping``, ``lexical``, ``prop``, ``retromae`` or ``dupmae``) turns
the corpus into training examples once per epoch (seeded by (seed, epoch, task)); with several
tasks, each batch holds one task's examples and the batches of all tasks are shuffled together.
The model is trained by the shared loop (checkpoints, resume, bf16), and saved as a plain
sentence-transformers folder whose manifest records the tasks and settings. Only
``dataset.corpus`` is read: the trainer never opens a query or qrels file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.data.dataset import load_dataset
from pretriever.errors import ConfigError, PretrieverError
from pretriever.training.config import to_dict
from pretriever.training.grad_cache import embedded_loss
from pretriever.training.loop import LoopConfig, LoopResult, autocast_dtype, train_loop
from pretriever.training.pretrain._text import Doc, rng_for
from pretriever.training.pretrain.lexical import DEFAULT_QUERY_KINDS, QUERY_KINDS

TASKS = ("ict", "bfs", "cropping", "lexical", "prop", "retromae", "dupmae")
CONTRASTIVE = ("ict", "bfs", "cropping")
MASKED = ("prop", "retromae", "dupmae")
NEEDS = {
    "ict": "ICT needs documents of at least two sentences within passage_words words",
    "bfs": "BFS needs documents with a title and a body, or at least two sentences",
    "cropping": "cropping needs documents of at least 8 words",
    "lexical": "lexical needs documents with a pseudo-query of a kind in lexical_queries (a title, a "
               "sentence, title keywords, or a topic: title words at least 5 documents share and the "
               "document repeats), and 1 + lexical_negatives candidates for each",
    "prop": "PROP needs documents of at least 5 content words",
    "retromae": "RetroMAE needs non-empty documents",
    "dupmae": "DupMAE needs non-empty documents",
}


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting of ``pretriever pretrain`` (see ``--help``)."""

    dataset: str
    out: str
    tasks: str = "ict"
    base: str = "minilm"
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=1, lr=1e-5))
    batch_size: int = 32
    max_length: int = 128
    query_max_length: int = 64
    max_examples: int | None = None
    temperature: float = 0.05
    ict_remove_rate: float = 0.9
    passage_words: int = 100
    crop_ratio_min: float = 0.1
    crop_ratio_max: float = 0.5
    crop_queue: int = 0
    crop_momentum: float = 0.999
    lexical_weight: float = 2.0
    lexical_depth: int = 30
    lexical_negatives: int = 7
    lexical_drop_source: bool = False
    lexical_queries: str = ",".join(DEFAULT_QUERY_KINDS)
    lexical_teacher: str = "start"  # the teacher's dense part: "start" (the student's start) or "base"
    lexical_teacher_length: int | None = None  # its document tokens (None: max_length)
    lexical_inbatch: float = 0.0  # weight of in-batch distillation over every document of the batch
    lexical_topic_batches: bool = False  # batches of pseudo-queries on one topic (k-means)
    lexical_extra_queries: int = 0  # keyword queries per document taught by in-batch distillation only
    lexical_feedback: int = 0  # Rocchio feedback in the teacher: from its top K documents (0: off)
    lexical_feedback_weight: float = 1.0  # the weight of their mean vector
    idf_pooling: float = 0.0  # 0: the base's mean pooling; p > 0: tokens weighted by (IDF / mean)^p
    prop_mu: float = 100.0
    prop_mean_length: float = 3.0
    prop_mlm_weight: float = 1.0
    prop_mask_rate: float = 0.15
    mae_encoder_rate: float = 0.3
    mae_decoder_rate: float = 0.5
    precision: str = "auto"
    grad_cache: int = 0  # ict, bfs, cropping, lexical: embed CHUNK texts at a time (GradCache; 0: off)
    device: str | None = None

    def __post_init__(self) -> None:
        tasks = self.task_list
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"unknown pre-training task(s) {', '.join(unknown) or '(none given)'}; "
                              f"choose from {', '.join(TASKS)} (comma-separated)")
        if len(set(tasks)) != len(tasks) or {"retromae", "dupmae"} <= set(tasks):
            raise ConfigError("each task once; dupmae already includes retromae")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.max_examples is not None and self.max_examples < self.batch_size:
            raise ConfigError(f"max_examples ({self.max_examples}) must be at least batch_size")
        for name in ("ict_remove_rate", "prop_mask_rate", "mae_encoder_rate", "mae_decoder_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.crop_ratio_min <= self.crop_ratio_max <= 1:
            raise ConfigError(f"need 0 < crop_ratio_min <= crop_ratio_max <= 1, got {self.crop_ratio_min} "
                              f"and {self.crop_ratio_max}")
        if self.crop_queue < 0 or not 0 <= self.crop_momentum < 1:
            raise ConfigError(f"crop_queue must be >= 0 and crop_momentum in [0, 1), got {self.crop_queue} "
                              f"and {self.crop_momentum}")
        if self.crop_queue and "cropping" not in tasks:
            raise ConfigError("crop_queue is a setting of the cropping task: add cropping to tasks")
        if self.lexical_weight < 0 or not 1 <= self.lexical_negatives < self.lexical_depth:
            raise ConfigError(f"lexical_weight must be >= 0 and 1 <= lexical_negatives < lexical_depth, got "
                              f"{self.lexical_weight}, {self.lexical_negatives} and {self.lexical_depth}")
        kinds = self.lexical_query_kinds
        if not kinds or set(kinds) - set(QUERY_KINDS):
            raise ConfigError(f"lexical_queries must be a comma-separated subset of "
                              f"{', '.join(QUERY_KINDS)}; got {self.lexical_queries!r}")
        if self.lexical_teacher not in ("start", "base"):
            raise ConfigError(f"lexical_teacher must be start (the model training starts from) or base "
                              f"(the base as given, without IDF pooling), got {self.lexical_teacher!r}")
        if self.lexical_inbatch < 0:
            raise ConfigError(f"lexical_inbatch must be >= 0 (0: off), got {self.lexical_inbatch}")
        if self.lexical_extra_queries < 0 or (self.lexical_extra_queries and not self.lexical_inbatch):
            raise ConfigError(f"lexical_extra_queries ({self.lexical_extra_queries}) must be >= 0, and needs "
                              f"lexical_inbatch > 0: in-batch distillation is what teaches them")
        if self.lexical_feedback < 0 or self.lexical_feedback_weight < 0:
            raise ConfigError(f"lexical_feedback ({self.lexical_feedback}) and lexical_feedback_weight "
                              f"({self.lexical_feedback_weight}) must be >= 0 (feedback 0: off)")
        if self.lexical_teacher_length is not None and self.lexical_teacher_length < 1:
            raise ConfigError(f"lexical_teacher_length must be positive, got {self.lexical_teacher_length}")
        if self.idf_pooling < 0:
            raise ConfigError(f"idf_pooling must be 0 (off) or a positive power, got {self.idf_pooling}")
        if self.grad_cache < 0:
            raise ConfigError(f"grad_cache is a chunk size >= 0 (0: off), got {self.grad_cache}")
        if self.grad_cache and not set(self.task_list) & {*CONTRASTIVE, "lexical"}:
            raise ConfigError(f"grad_cache applies to {', '.join((*CONTRASTIVE, 'lexical'))}; none of "
                              f"tasks {self.tasks!r} embeds a batch it could split (they score tokens, "
                              f"not embeddings): drop grad_cache or lower batch_size to save memory")
        if self.passage_words < 1:
            raise ConfigError(f"passage_words must be at least 1, got {self.passage_words}")
        for name in ("temperature", "prop_mu", "prop_mean_length"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def lexical_query_kinds(self) -> tuple[str, ...]:
        return tuple(k.strip().lower() for k in self.lexical_queries.split(",") if k.strip())

    @property
    def task_list(self) -> tuple[str, ...]:
        return tuple(t.strip().lower() for t in self.tasks.split(",") if t.strip())


@dataclass
class PretrainReport:
    """What ``pretrain`` produced: examples per task and epoch, the loop's record."""

    folder: Path
    loop: LoopResult
    examples: dict[str, int]
    documents: int


def corpus_docs(corpus: Any) -> list[Doc]:
    """The corpus as the tasks see it (a missing title is the empty string)."""
    return [Doc(i, t or "", x) for i, t, x in zip(corpus.ids, corpus.titles, corpus.texts, strict=True)]


def task_examples(task: str, docs: list[Doc], config: PretrainConfig, epoch: int,
                  lm: Any = None, teacher: Any = None) -> list[Any]:
    """The examples ``task`` draws from ``docs`` in ``epoch`` (pure in (config.loop.seed, epoch))."""
    seed = config.loop.seed
    if task == "ict":
        from pretriever.training.pretrain.ict import ict_pairs

        return ict_pairs(docs, remove_rate=config.ict_remove_rate, passage_words=config.passage_words,
                         seed=seed, epoch=epoch)
    if task == "bfs":
        from pretriever.training.pretrain.bfs import bfs_pairs

        return bfs_pairs(docs, passage_words=config.passage_words, seed=seed, epoch=epoch)
    if task == "cropping":
        from pretriever.training.pretrain.cropping import crop_pairs

        return crop_pairs(docs, ratio_min=config.crop_ratio_min, ratio_max=config.crop_ratio_max,
                          seed=seed, epoch=epoch)
    if task == "lexical":
        from pretriever.training.pretrain.lexical import lexical_lists

        if config.max_examples is not None:  # score only the pseudo-queries that can be kept
            keep = rng_for(seed, epoch, "lexical:docs").permutation(len(docs))[: config.max_examples]
            docs = [docs[i] for i in sorted(keep)]
        return lexical_lists(docs, teacher, negatives=config.lexical_negatives,
                             drop_source=config.lexical_drop_source, kinds=config.lexical_query_kinds,
                             extra=config.lexical_extra_queries, seed=seed, epoch=epoch)
    if task == "prop":
        from pretriever.training.pretrain.prop import rop_examples

        return rop_examples(docs, mu=config.prop_mu, mean_length=config.prop_mean_length, seed=seed,
                            epoch=epoch, lm=lm)
    return [doc for doc in docs if doc.full.strip()]  # retromae / dupmae: the texts themselves


# One lexical step without GradCache, CPU, fp32, MiniLM (384 wide, 6 layers): 32 examples x 16
# documents x 128 tokens = 65,536 document tokens peaked at 23.5 GB, 1e9 bytes (benchmarks/RESULTS.md).
_GB_PER_TOKEN_LAYER_WIDTH = 23.5 / (65_536 * 6 * 384)


def lexical_step_gb(config: PretrainConfig, layers: int = 6, width: int = 384) -> float:
    """Roughly the memory of one lexical step without GradCache: activations grow with the document
    tokens a step embeds and with the model's depth and width (scaled from one measurement)."""
    tokens = config.batch_size * (config.lexical_negatives + 1) * config.max_length
    return tokens * layers * width * _GB_PER_TOKEN_LAYER_WIDTH


def _memory_gb(device: str) -> float | None:
    """The RAM (CPU) or GPU memory this run has, None where it cannot be told."""
    import os

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory / 1e9
    if device == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return None


def pretrain(config: PretrainConfig, *, progress: bool = True, stop_after: int | None = None,
             overwrite: bool = False, work: str | Path | None = None,
             log: Callable[[str], None] | None = None) -> PretrainReport:
    """Pre-train ``config.base`` on the corpus of ``config.dataset`` and save it to ``config.out``.

    Rerun the same call after a kill to resume from ``work`` (default ``OUT.work``).
    """
    import torch

    from pretriever.encoders.dense import DenseEncoder, resolve_model
    from pretriever.training.embedding import embed
    from pretriever.training.objectives.inbatch_kd import inbatch_kl
    from pretriever.training.objectives.infonce import infonce
    from pretriever.training.objectives.margin_mse import margin_mse
    from pretriever.training.pretrain.mlm import mask_tokens, mlm_head, mlm_loss

    out = Path(config.out)
    if out.exists() and not overwrite:
        raise PretrieverError(f"{out} already exists; choose another --out or pass --overwrite")
    work_dir = Path(work) if work else out.with_name(out.name + ".work")
    dataset = load_dataset(config.dataset)
    corpus = dataset.corpus  # the only file read: no queries, no qrels
    docs = corpus_docs(corpus)
    tasks = config.task_list
    base = config.base
    if config.idf_pooling:  # teacher and student both start from the IDF-pooled base
        from pretriever.encoders.idf_pooling import save_idf_pooled

        base = str(save_idf_pooled(config.base, corpus.contents(), work_dir / "idf-base",
                                   power=config.idf_pooling, device=config.device))
    lm = None
    if "prop" in tasks:
        from pretriever.training.pretrain.prop import CollectionLM

        lm = CollectionLM(docs, config.prop_mu)
    teacher = None
    if "lexical" in tasks:
        from pretriever.training.pretrain.lexical import LexicalTeacher

        teacher = LexicalTeacher(corpus, base if config.lexical_teacher == "start" else config.base,
                                 weight=config.lexical_weight, temperature=config.temperature,
                                 depth=config.lexical_depth,
                                 max_length=config.lexical_teacher_length or config.max_length,
                                 feedback=config.lexical_feedback,
                                 feedback_weight=config.lexical_feedback_weight,
                                 work_dir=work_dir / "teacher", progress=progress)

    cache: dict[int, list[tuple[str, list[Any], int]]] = {}
    counts: dict[str, int] = {}

    def batches(epoch: int) -> list[tuple[str, list[Any], int]]:
        if epoch not in cache:
            cache.clear()
            out_batches = []
            for task in tasks:
                examples = task_examples(task, docs, config, epoch, lm, teacher)
                shuffle = rng_for(config.loop.seed, epoch, task + ":order")
                if task == "lexical" and config.lexical_topic_batches and len(examples) >= 2:
                    from pretriever.training.tasb import topic_order

                    order = topic_order(np.stack([ex.vector for ex in examples]), config.batch_size, shuffle)
                else:
                    order = shuffle.permutation(len(examples))
                picked = [examples[i] for i in order][: config.max_examples or None]
                if epoch == 0:  # the report's per-epoch counts (train_loop lists epoch 0 first)
                    counts[task] = len(picked)
                if len(picked) < 2:
                    raise ConfigError(f"task {task} drew {len(picked)} examples from {len(docs)} documents: "
                                      f"{NEEDS[task]}; choose other tasks for this corpus")
                if task == "cropping" and config.crop_queue >= len(picked):
                    # the queue would hold a query's own document from an earlier epoch as a negative
                    raise ConfigError(f"crop_queue ({config.crop_queue}) must be smaller than the "
                                      f"{len(picked)} cropping examples per epoch")
                out_batches += [(task, picked[i : i + config.batch_size])
                                for i in range(0, len(picked), config.batch_size)
                                if len(picked[i : i + config.batch_size]) >= 2]
            mix = rng_for(config.loop.seed, epoch, "mix").permutation(len(out_batches))
            seeds = rng_for(config.loop.seed, epoch, "masks").integers(0, 2**62, len(out_batches))
            cache[epoch] = [(*out_batches[i], int(seeds[n])) for n, i in enumerate(mix)]
        return cache[epoch]

    torch.manual_seed(config.loop.seed)
    encoder = DenseEncoder(base, backend="torch", precision="float32", device=config.device)
    st = encoder.st
    device = str(st.device)
    prompts, normalize = encoder.prompts, encoder.normalize
    transformer = st[0].auto_model
    if "lexical" in tasks and not config.grad_cache and log is not None:
        need = lexical_step_gb(config, transformer.config.num_hidden_layers, transformer.config.hidden_size)
        have = _memory_gb(device)
        if have and need > 0.6 * have:  # a rough estimate on a machine shared with the OS: warn early
            log(f"a lexical step embeds {config.batch_size * (config.lexical_negatives + 1)} documents of "
                f"up to {config.max_length} tokens: about {need:.0f} GB without GradCache, and this "
                f"{device} has {have:.0f} GB. Pass --grad-cache 32 (same gradient, a chunk's memory) "
                f"if it runs out of memory")
    heads: dict[str, Any] = {}
    if any(t in MASKED for t in tasks):
        heads["mlm"] = mlm_head(transformer.get_input_embeddings())
    if any(t in ("retromae", "dupmae") for t in tasks):
        from pretriever.training.pretrain.retromae import decoder_heads

        shape = transformer.config
        heads["decoder"] = decoder_heads(shape.hidden_size, shape.num_attention_heads)
    if "cropping" in tasks and config.crop_queue:
        from pretriever.training.pretrain.cropping import key_queue

        heads["queue"] = key_queue(st, config.crop_queue, encoder.dim)

    class Model(torch.nn.Module):  # one module, so checkpoints hold the heads and the queue too
        def __init__(self) -> None:
            super().__init__()
            self.st = st
            self.heads = torch.nn.ModuleDict(heads)

    model = Model().to(device)
    tokenizer = st.tokenizer
    mask_id = tokenizer.mask_token_id
    if mask_id is None and any(t in MASKED for t in tasks):
        raise ConfigError(f"{encoder.source}: the tokenizer has no [MASK] token, which "
                          f"{', '.join(MASKED)} need")

    def tokens(texts: list[str]) -> tuple[dict[str, Any], Any]:
        features = tokenizer(texts, padding=True, truncation=True, max_length=config.max_length,
                             return_tensors="pt", return_special_tokens_mask=True)
        special = features.pop("special_tokens_mask").bool()
        features = {k: v.to(device) for k, v in features.items()}
        return features, (~special.to(device)) & features["attention_mask"].bool()

    def vectors(output: dict[str, Any]) -> Any:
        v = output["sentence_embedding"]
        return torch.nn.functional.normalize(v, dim=-1) if normalize else v

    def embedder(max_length: int) -> Callable[[list[str]], Any]:
        return lambda texts: embed(st, texts, max_length, normalize=normalize)

    def loss_fn(batch: tuple[str, list[Any], int], progress_epochs: float) -> Any:
        task, examples, seed = batch
        generator = torch.Generator().manual_seed(seed)
        if task in CONTRASTIVE:
            doc_prompt = prompts["document"]
            query_prompt = doc_prompt if task == "cropping" else prompts["query"]
            queries = (embedder(config.max_length if task == "cropping" else config.query_max_length),
                       [query_prompt + ex.query for ex in examples])
            doc_texts = [doc_prompt + ex.positive for ex in examples]
            if "queue" in heads and task == "cropping":
                queue = model.heads["queue"]
                with torch.no_grad():
                    keys = embed(queue.encoder, doc_texts, config.max_length, normalize=normalize)
                negatives = torch.cat([keys, queue.negatives().to(keys.dtype)])
                loss = embedded_loss([queries], lambda reps: infonce(reps[0], negatives, config.temperature,
                                                                     group=1), config.grad_cache, device)
                queue.push(keys)
                return loss
            return embedded_loss([queries, (embedder(config.max_length), doc_texts)],
                                 lambda reps: infonce(*reps, config.temperature, group=1),
                                 config.grad_cache, device)
        if task == "lexical":
            teacher_scores = torch.tensor([ex.scores for ex in examples], device=device)
            rows, every, keep = examples, None, []
            if config.lexical_inbatch:  # every distinct document of the batch, scored by the teacher,
                rows = [*examples, *(x for ex in examples for x in ex.extra)]  # extra queries last
                ids = [doc for ex in examples for doc in ex.doc_ids]
                first = {doc: j for j, doc in reversed(list(enumerate(ids)))}
                keep = sorted(first.values())
                every = torch.tensor(teacher.batch_scores(rows, [ids[j] for j in keep]), device=device)

            def lexical_loss(reps: list[Any]) -> Any:
                q, d = reps
                loss = margin_mse(q[: len(examples)], d, teacher_scores, config.temperature)
                if every is not None:
                    loss = loss + config.lexical_inbatch * inbatch_kl(q, d[keep], every, config.temperature)
                return loss

            texts = [prompts["query"] + x.query for x in rows]
            documents = [prompts["document"] + t for ex in examples for t in ex.documents]
            return embedded_loss([(embedder(config.query_max_length), texts),
                                  (embedder(config.max_length), documents)],
                                 lexical_loss, config.grad_cache, device)
        if task == "prop":
            from pretriever.training.pretrain.prop import rop_loss

            features, maskable = tokens([prompts["document"] + ex.document for ex in examples])
            masked, labels = mask_tokens(features["input_ids"], maskable, config.prop_mask_rate, mask_id,
                                         generator)
            output = st({**features, "input_ids": masked})
            word_sets = [prompts["query"] + " ".join(s) for ex in examples for s in (ex.preferred, ex.other)]
            sets = embed(st, word_sets, config.query_max_length, normalize=normalize)
            rop = rop_loss(sets[0::2], sets[1::2], vectors(output), config.temperature)
            mlm = mlm_loss(model.heads["mlm"], output["token_embeddings"], labels)
            return rop + config.prop_mlm_weight * mlm
        from pretriever.training.pretrain.retromae import retromae_loss

        features, maskable = tokens([prompts["document"] + doc.full for doc in examples])
        loss, _ = retromae_loss(st, model.heads["mlm"], model.heads["decoder"], features, maskable, mask_id,
                                generator, encoder_rate=config.mae_encoder_rate,
                                decoder_rate=config.mae_decoder_rate, bow=task == "dupmae")
        return loss

    def on_step(step: int) -> None:
        if "queue" in heads:
            model.heads["queue"].update(st, config.crop_momentum)

    dtype = autocast_dtype(config.precision, device)
    fingerprint = {**to_dict(config), "out": None, "corpus_sha256": corpus.sha256}
    result = train_loop(model, batches, loss_fn, config.loop, work=work_dir, fingerprint=fingerprint,
                        device=device, dtype=dtype, progress=progress, stop_after=stop_after,
                        batch_examples=lambda b: len(b[1]), log=log, on_step=on_step)
    report = PretrainReport(out, result, dict(counts), len(docs))
    if not result.finished:
        return report
    provenance = {"pretraining": {
        "config": to_dict(config), "tasks": list(tasks), "dataset": dataset.name,
        "corpus_sha256": corpus.sha256, "documents": len(docs), "base": resolve_model(config.base),
        "examples_per_epoch": dict(counts), "steps": result.steps, "losses": result.losses,
        "examples_per_second": result.examples_per_second, "seconds": result.seconds,
    }}
    encoder.save(out, overwrite=overwrite, provenance=provenance,
                 files={"pretraining_config.json": json.dumps(to_dict(config), indent=2)})
    shutil.rmtree(work_dir, ignore_errors=True)
    return report


def examples_summary(report: PretrainReport) -> str:
    """'ict 5183, bfs 5183' for the CLI."""
    return ", ".join(f"{task} {n}" for task, n in report.examples.items())

