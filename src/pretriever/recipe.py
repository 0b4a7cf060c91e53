"""``pretriever build``: a corpus in, the best retriever measured for it out, in one command.

The recipe is decided by what the dataset holds, and judged by the pipeline it ends in, never by
the component a stage changes (a dense model taught what BM25 knows adds nothing to a hybrid
that already holds BM25; benchmarks/RESULTS.md, "Building").

- **No labels**: BM25 with RM3 on queries of at most 3 terms, the dense encoder, zero-shot late
  interaction (MaxSim over the encoder's own token vectors, PLAID-compressed), fused by min-max
  0.5 / 0.5: the stages that lifted the final pipeline on average over the five shared
  collections' test splits and hurt none (RM3 lifts NFCorpus's short queries and changes the
  others little; MaxSim lifts all five). Those defaults were chosen on those test splits, so on
  them the gain is optimistic (RESULTS.md says by how much); a build itself chooses nothing.
- **Labels** (``train_split``): the zero-label pipeline is the first candidate; then the dense
  model is fine-tuned (the measured best recipe) and mixed with its start (WiSE-FT, weight chosen
  on dev); then the fusion weights are tuned on dev; then a given reranker is tried. Each stage is
  kept only if the pipeline's dev nDCG@10 beats the previous one; the report says what was
  dropped and why. The dev split is ``dev_split``, else the dataset's dev split, else a seeded
  share of the training queries that the trainer holds out too.

The test split is read once, after every choice, for the report: the built pipeline against the
off-the-shelf hybrid with a paired randomization test, and each stage's pipeline on test.

Each stage leaves an artefact in ``OUT.work`` and a line in ``OUT.work/state.json``, so a killed
build resumes where it stopped (encodings resume mid-corpus, training from its checkpoint) and
gives the same pipeline. ``OUT`` appears only when complete: the pipeline folder (``load_index``,
``evaluate --retriever OUT``, served as is), ``report.md``, ``chart.png`` and ``build.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pretriever._io import atomic_dir, fresh_output, work_folder, write_json
from pretriever.data.dataset import Dataset, load_dataset
from pretriever.errors import ConfigError, PretrieverError
from pretriever.retrieval.fusion import Fusion
from pretriever.types import Qrels, Queries, Run

FORMAT_VERSION = 1
METRIC = "nDCG@10"
DEPTH = 100
# Measured defaults (benchmarks/RESULTS.md, "Label-free fusion and pseudo-relevance feedback"):
BM25_FEEDBACK = "rm3:max_query_terms=3"
DENSE_FEEDBACK = "none"
FUSION = Fusion("wsum", "min-max")
WISE_FT_WEIGHTS = (0.5, 0.7, 1.0)  # share of the fine-tuned model; 0 (the start) is the previous stage
# Cost ratios measured on this project's 2-core CPU: the SciFact build encoded 53 documents/s and
# bi-encoder training runs 3.9 examples/s in bf16 (RESULTS.md), so a training example costs about
# 15 document encodings; the late-interaction encoding took 2.0x the dense one.
TRAIN_COST = 15.0
REFERENCE_DOCS_PER_SECOND = 53.0
COLBERT_COST = 2.0
LABELLED_BUDGET_MINUTES = 60.0


@dataclass(frozen=True)
class BuildConfig:
    """What ``build`` reads and where it writes. ``budget_minutes`` scales the training stage to
    fit (default: 60 minutes when there are labels; the zero-label stages are not scaled)."""

    dataset: str
    out: str
    model: str = "minilm"
    train_split: str | None = None
    dev_split: str | None = None
    dev_fraction: float = 0.1
    budget_minutes: float | None = None
    colbert: bool = True
    bm25_feedback: str = BM25_FEEDBACK
    dense_feedback: str = DENSE_FEEDBACK
    reranker: str | None = None
    max_examples: int | None = None
    seed: int = 42
    lenient: bool = False
    backend: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.train_split == "test" or self.dev_split == "test":
            raise ConfigError("build never trains or chooses on the test split; name train (and dev)")
        if self.dev_split and not self.train_split:
            raise ConfigError("--dev-split needs --train-split: without labels nothing is chosen on dev")
        if not 0.0 < self.dev_fraction < 0.5:
            raise ConfigError(f"dev_fraction must be in (0, 0.5), got {self.dev_fraction}")
        if self.budget_minutes is not None and not self.train_split:
            raise ConfigError(
                "--budget-minutes fits the fine-tuning into the time given: it needs --train-split"
            )
        if self.dev_split and self.dev_split == self.train_split:
            raise ConfigError(
                f"--dev-split {self.dev_split} is the training split: choices must be made on "
                "queries the model was not trained on (name another split, or leave it out)"
            )
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise ConfigError(f"budget_minutes must be positive, got {self.budget_minutes}")
        from pretriever.feedback import RM3, Rocchio, parse_feedback

        if not isinstance(parse_feedback(self.bm25_feedback) or RM3(), RM3):
            raise ConfigError(f"BM25's feedback is rm3 or none, not {self.bm25_feedback}")
        if not isinstance(parse_feedback(self.dense_feedback) or Rocchio(), Rocchio):
            raise ConfigError(f"the dense member's feedback is rocchio or none, not {self.dense_feedback}")


@dataclass
class Stage:
    """One stage of a build: what it did, its dev score, whether the pipeline kept it and why."""

    name: str
    what: str
    kept: bool = True
    dev: float | None = None
    reason: str = ""
    seconds: float = 0.0
    choice: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    """The built pipeline's folder, the stages, and the test comparison (None without a test split)."""

    folder: Path
    stages: list[Stage]
    plan: list[dict[str, Any]]
    test: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "plan": self.plan,
            "stages": [asdict(s) for s in self.stages],
            "test": self.test,
        }


# -- state: what a killed build already did ----------------------------------------------------------
class _State:
    """``OUT.work/state.json``: the finished stages of this exact build (config and corpus)."""

    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        self.stages: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") != key:
                raise ConfigError(
                    f"{path.parent} holds an unfinished build with other settings or another corpus; "
                    "rerun with the same settings to resume it, or pass --overwrite to start over"
                )
            self.stages = data.get("stages", {})
            self.meta = data.get("meta", {})

    def done(self, name: str) -> Stage | None:
        record = self.stages.get(name)
        return Stage(**record) if record else None

    def finish(self, stage: Stage) -> Stage:
        self.stages[stage.name] = asdict(stage)
        self.save()
        return stage

    def save(self) -> None:
        write_json(self.path, {"key": self.key, "meta": self.meta, "stages": self.stages})


# -- the plan --------------------------------------------------------------------------------------
def measure_encoding(model: str, texts: list[str], backend: str, precision: str) -> float:
    """Documents per second of ``model`` on this machine (a short timed batch after a warm-up)."""
    from pretriever.encoders.dense import DenseEncoder

    encoder = DenseEncoder(model, backend=backend, precision=precision)
    sample = texts[:64] or ["empty"]
    encoder.encode_documents(sample[:8], progress=False)
    start = time.perf_counter()
    encoder.encode_documents(sample, progress=False)
    return len(sample) / max(time.perf_counter() - start, 1e-6)


def make_plan(
    config: BuildConfig, dataset: Dataset, docs_per_second: float, n_examples: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Estimated minutes per stage, and the training examples that fit the budget (labelled)."""
    n_docs = len(dataset.corpus)
    encode = n_docs / docs_per_second / 60
    plan = [{"stage": "bm25", "minutes": n_docs / 20_000 / 60}, {"stage": "dense", "minutes": encode}]
    if config.colbert:
        plan.append({"stage": "colbert", "minutes": encode * COLBERT_COST})
    examples = None
    if config.train_split:
        fixed = sum(p["minutes"] for p in plan) + encode * len(WISE_FT_WEIGHTS)
        budget = config.budget_minutes or LABELLED_BUDGET_MINUTES
        per_example = TRAIN_COST / docs_per_second / 60
        fit = int(max(0.0, budget - fixed) / per_example / 3)  # 3 epochs
        examples = min(n_examples, fit, config.max_examples or n_examples)
        if n_examples < 32:
            raise ConfigError(
                f"{config.train_split} holds {n_examples} judged relevant pairs; fine-tuning "
                "needs at least 32: build without --train-split, or label more"
            )
        if examples < 32:
            raise ConfigError(
                f"--budget-minutes {budget:g} leaves no time to fine-tune (the zero-label "
                f"stages and the soups take about {fixed:.0f} minutes here); give more, or "
                "build without --train-split"
            )
        plan += [
            {"stage": "fine-tune", "minutes": examples * 3 * per_example, "examples": examples},
            {"stage": "wise-ft", "minutes": encode * len(WISE_FT_WEIGHTS)},
            {"stage": "fusion weights", "minutes": 0.5},
        ]
        if config.reranker:
            plan.append({"stage": "reranker", "minutes": 2.0})
    return plan, examples


# -- the build ---------------------------------------------------------------------------------------
def build(
    config: BuildConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BuildResult:
    """Run the recipe and write ``config.out``; rerun the same call after a kill to resume."""
    from pretriever.data.corpus import Corpus

    started = time.perf_counter()
    say = log or (lambda message: None)
    out = fresh_output(config.out, overwrite)
    dataset = load_dataset(config.dataset, lenient=config.lenient, progress=progress)
    corpus: Corpus = dataset.corpus
    work = work_folder(out)
    key = {
        "config": {k: v for k, v in asdict(config).items() if k not in ("out",)},
        "corpus": corpus.fingerprint(),
        "format_version": FORMAT_VERSION,
    }
    try:
        state = _State(work / "state.json", key)
    except ConfigError:
        if not overwrite:
            raise
        say(f"starting over: {work} held a build with other settings")
        shutil.rmtree(work)
        state = _State(work / "state.json", key)
    work.mkdir(parents=True, exist_ok=True)
    if state.stages:
        say(f"resuming the build in {work} (finished: {', '.join(state.stages)})")

    labelled = config.train_split is not None
    train_qrels: Qrels = {}
    if labelled:
        assert config.train_split is not None
        train_qrels = dataset.qrels(config.train_split)
    n_examples = sum(len([d for d, s in v.items() if s > 0]) for v in train_qrels.values())
    if "documents_per_second" not in state.meta:  # measured once: a resumed build keeps its plan
        # only a budget needs this machine's speed; without labels the reference CPU's is shown
        state.meta["documents_per_second"] = (
            measure_encoding(config.model, corpus.contents()[:64], config.backend, config.precision)
            if labelled
            else REFERENCE_DOCS_PER_SECOND
        )
        state.save()
    docs_per_second = float(state.meta["documents_per_second"])
    plan, examples = make_plan(config, dataset, docs_per_second, n_examples)
    say(
        "plan: "
        + ", ".join(f"{p['stage']} ~{_duration(p['minutes'])}" for p in plan)
        + f" (estimated from {docs_per_second:.0f} documents/s"
        + (" encoded here)" if labelled else ", the reference 2-core CPU's)")
    )

    stages: list[Stage] = []
    members = _zero_label_members(config, corpus, work, state, stages, progress, say)
    from pretriever.retrieval.pipeline import Pipeline

    pipeline = Pipeline(members, FUSION)
    dev_queries: Queries = {}
    dev_qrels: Qrels = {}
    if labelled:
        dev_qrels = _dev_split(config, dataset)
        dev_queries = {q: dataset.queries[q] for q in dev_qrels}
        say(f"dev: {len(dev_qrels)} queries, held out from training")
        pipeline = _labelled_stages(
            config, dataset, work, state, stages, pipeline, dev_queries, dev_qrels, examples, progress, say
        )
    test, evaluations = (
        _test_report(dataset, pipeline, work, config, say) if "test" in dataset.splits else (None, None)
    )
    result = BuildResult(out, stages, plan, test)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _write_report(tmp, dataset, config, result, pipeline, dev_qrels, evaluations)
        write_json(
            tmp / "build.json",
            {
                "dataset": dataset.name,
                "config": asdict(config),
                "documents_per_second": docs_per_second,
                "seconds": round(time.perf_counter() - started, 1),  # this call's; resumed stages add theirs
                **result.to_dict(),
                "folder": str(out),
            },
        )
        pipeline.write(tmp, extra={"build": "build.json"})
    shutil.rmtree(work, ignore_errors=True)
    return result


def _duration(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes >= 1 else f"{max(1, round(minutes * 60))} s"


def _timed_stage(
    state: _State,
    stages: list[Stage],
    name: str,
    what: str,
    run: Callable[[], Stage | None],
    say: Callable[[str], None],
) -> Stage:
    done = state.done(name)
    if done is not None:
        stages.append(done)
        return done
    say(f"stage {name}: {what}")
    start = time.perf_counter()
    stage = run() or Stage(name, what)
    stage.seconds = round(time.perf_counter() - start, 1)
    stages.append(state.finish(stage))
    return stage


def _member(
    state: _State,
    stages: list[Stage],
    name: str,
    what: str,
    folder: Path,
    make: Callable[[], Any],
    say: Callable[[str], None],
) -> Any:
    """Build and save one index, or load it when a killed build already saved it."""
    from pretriever.retrieval.loading import load_index

    def run() -> Stage:
        make().save(folder, overwrite=True)
        return Stage(name, what, reason="zero-label stage: measured to lift the pipeline (RESULTS.md)")

    _timed_stage(state, stages, name, what, run, say)
    return load_index(folder)


def _zero_label_members(
    config: BuildConfig,
    corpus: Any,
    work: Path,
    state: _State,
    stages: list[Stage],
    progress: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from pretriever.encoders.colbert import ColBERTEncoder
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.feedback import parse_feedback
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.indexes.plaid import PlaidIndex

    rm3, rocchio = parse_feedback(config.bm25_feedback), parse_feedback(config.dense_feedback)
    models = {"backend": config.backend, "precision": config.precision}
    makers: dict[str, tuple[str, Callable[[], Any]]] = {
        "bm25": (
            f"BM25 (feedback: {config.bm25_feedback})",
            lambda: BM25Index(progress=progress, feedback=rm3),
        ),
        "dense": (
            f"dense {config.model} (feedback: {config.dense_feedback})",
            lambda: FlatIndex(
                DenseEncoder(config.model, **models),
                work_dir=work / "dense.encode",
                progress=progress,
                feedback=rocchio,
            ),
        ),
    }
    if config.colbert:
        makers["colbert"] = (
            f"zero-shot late interaction over {config.model}'s token vectors (PLAID)",
            lambda: PlaidIndex(
                ColBERTEncoder(config.model, **models), work_dir=work / "colbert.encode", progress=progress
            ),
        )
    return {
        name: _member(state, stages, name, what, work / name, lambda make=make: make().build(corpus), say)
        for name, (what, make) in makers.items()
    }


def _dev_split(config: BuildConfig, dataset: Dataset) -> Qrels:
    """The dev qrels, decided by the trainer's own rule (``training.splits.train_and_dev``: the named
    split, else the dataset's dev split, else a seeded share of train), uncapped: the trainer holds
    out exactly these queries, so training never sees them."""
    from pretriever.training.splits import train_and_dev

    trainer = replace(trainer_config(config, dataset, Path(config.out), "bm25", None), dev_max_queries=0)
    _, dev = train_and_dev(dataset, trainer)
    if not dev:
        raise ConfigError(
            f"{config.train_split} has too few queries to hold out a dev share; name one with --dev-split"
        )
    return dev


def dev_score(pipeline: Any, queries: Queries, qrels: Qrels) -> float:
    """The pipeline's nDCG@10 on the dev queries."""
    from pretriever.evaluation.measures import evaluate

    return evaluate(qrels, pipeline.search(queries, k=DEPTH), [METRIC]).metrics[METRIC]


def _labelled_stages(
    config: BuildConfig,
    dataset: Dataset,
    work: Path,
    state: _State,
    stages: list[Stage],
    pipeline: Any,
    queries: Queries,
    qrels: Qrels,
    examples: int | None,
    progress: bool,
    say: Callable[[str], None],
) -> Any:
    """Each stage makes a candidate pipeline; it replaces the current one only if it scores higher
    on dev. Returns the pipeline kept."""
    from pretriever.retrieval.pipeline import Pipeline

    best = {"score": 0.0}

    def zero() -> Stage:
        return Stage(
            "zero-label",
            "the zero-label pipeline, off the shelf",
            dev=dev_score(pipeline, queries, qrels),
            reason="the starting point",
        )

    best["score"] = (
        _timed_stage(state, stages, "zero-label", "score the zero-label pipeline on dev", zero, say).dev
        or 0.0
    )

    def judged(name: str, what: str, score: float, choice: dict[str, Any]) -> Stage:
        previous = best["score"]
        kept = score > previous
        reason = (
            f"dev {score:.4f} > {previous:.4f}"
            if kept
            else f"dropped: dev {score:.4f} <= {previous:.4f} without it"
        )
        say(f"stage {name}: {reason}")
        return Stage(name, what, kept=kept, dev=score, reason=reason, choice=choice)

    # 1. fine-tune the dense model, mix it with its start (WiSE-FT), weight chosen on dev
    def fine_tune() -> Stage:
        model = fine_tune_dense(config, dataset, work, examples, progress, say)
        scores, folders = {}, {}
        for weight in WISE_FT_WEIGHTS:
            folder = _wise_ft_index(config, dataset, work, model, weight, progress)
            candidate = Pipeline({**pipeline.retrievers, "dense": _load(folder)}, pipeline.fusion)
            scores[weight] = dev_score(candidate, queries, qrels)
            folders[weight] = folder.name  # inside the work folder, wherever that is
            say(f"  WiSE-FT {weight:g}: dev {scores[weight]:.4f}")
        weight = max(scores, key=lambda w: (scores[w], -w))
        return judged(
            "fine-tune",
            f"fine-tune {config.model} on {config.train_split} ({examples} examples), WiSE-FT with its start",
            scores[weight],
            {"wise_ft": weight, "dev_by_weight": scores, "index": folders[weight], "model": model.name},
        )

    stage = _timed_stage(state, stages, "fine-tune", "fine-tune the dense model", fine_tune, say)
    if stage.kept:
        pipeline = Pipeline(
            {**pipeline.retrievers, "dense": _load(work / stage.choice["index"])}, pipeline.fusion
        )
        best["score"] = stage.dev or 0.0

    # 2. fusion weights tuned on dev
    def weights() -> Stage:
        tuned = Pipeline(pipeline.retrievers, pipeline.fusion)
        tuned.tune(qrels, queries, split="dev")
        score = dev_score(tuned, queries, qrels)
        return judged(
            "fusion weights",
            "fusion weights tuned on dev (grid, step 0.1)",
            score,
            {"weights": list(tuned.fusion.weights or ())},
        )

    stage = _timed_stage(state, stages, "fusion weights", "tune the fusion weights on dev", weights, say)
    if stage.kept:
        pipeline = Pipeline(
            pipeline.retrievers, replace(pipeline.fusion, weights=tuple(stage.choice["weights"]))
        )
        best["score"] = stage.dev or 0.0

    # 3. a given reranker, its interpolation weight tuned on dev
    if config.reranker:
        from pretriever.retrieval.loading import load_reranker

        def rerank() -> Stage:
            candidate = Pipeline(
                pipeline.retrievers, pipeline.fusion, reranker=load_reranker(config.reranker)
            )
            candidate.build(dataset.corpus)
            candidate.tune_interpolation(qrels, queries, split="dev")
            score = dev_score(candidate, queries, qrels)
            return judged(
                "reranker",
                f"rerank with {config.reranker}",
                score,
                {"interpolation": candidate.interpolation},
            )

        stage = _timed_stage(state, stages, "reranker", "try the reranker on dev", rerank, say)
        if stage.kept:
            pipeline = Pipeline(
                pipeline.retrievers,
                pipeline.fusion,
                reranker=load_reranker(config.reranker),
                interpolation=stage.choice["interpolation"],
            ).build(dataset.corpus)
    return pipeline


def _load(folder: Path) -> Any:
    from pretriever.retrieval.loading import load_index

    return load_index(folder)


def fine_tune_dense(
    config: BuildConfig,
    dataset: Dataset,
    work: Path,
    examples: int | None,
    progress: bool,
    say: Callable[[str], None],
) -> Path:
    """The measured best bi-encoder recipe (``pretriever train``'s defaults: TAS-B batches, one hard
    negative from the hybrid, 3 epochs, lr 2e-5), negatives mined from the build's own hybrid."""
    from pretriever.retrieval.pipeline import Pipeline
    from pretriever.training.registry import train

    first_stage = work / "first-stage"
    if not first_stage.is_dir():
        Pipeline({"bm25": _load(work / "bm25"), "dense": _load(work / "dense")}).save(
            first_stage, overwrite=True
        )
    out = work / "dense-ft"
    if (out / "manifest.json").is_file() or (out / "modules.json").is_file():
        return out
    train_config = trainer_config(config, dataset, out, first_stage, examples)
    train(train_config, progress=progress, log=say)
    return out


def trainer_config(
    config: BuildConfig, dataset: Dataset, out: Path, first_stage: Path | str, examples: int | None
) -> Any:
    """``train``'s config for the build: its defaults, and the build's dev split and seed, so the
    trainer holds out exactly the queries the build chooses on."""
    from pretriever.training.biencoder import TrainConfig

    train_config = TrainConfig(
        dataset=config.dataset,
        out=str(out),
        split=config.train_split or "train",
        base=config.model,
        first_stage=str(first_stage),
        dev_split=config.dev_split,
        dev_fraction=config.dev_fraction,
        max_examples=examples,
        lenient=config.lenient,
    )
    return replace(train_config, loop=replace(train_config.loop, seed=config.seed))


def _wise_ft_index(
    config: BuildConfig, dataset: Dataset, work: Path, model: Path, weight: float, progress: bool
) -> Path:
    """The dense index of the mix (1 - weight) x start + weight x fine-tuned, kept in the work folder."""
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.feedback import parse_feedback
    from pretriever.indexes.dense import FlatIndex
    from pretriever.training.soups import soup

    folder = work / f"dense-wise-{weight:g}"
    if (folder / "manifest.json").is_file():
        return folder
    mixed = model if weight == 1.0 else work / f"wise-{weight:g}"
    if weight != 1.0 and not (mixed / "modules.json").is_file():
        soup([config.model, str(model)], mixed, weights=[1.0 - weight, weight], overwrite=True)
    encoder = DenseEncoder(str(mixed), backend=config.backend, precision=config.precision)
    feedback = parse_feedback(config.dense_feedback)
    index = FlatIndex(
        encoder, work_dir=work / f"dense-wise-{weight:g}.encode", progress=progress, feedback=feedback
    ).build(dataset.corpus)
    index.embed_encoder = True  # the model lives in the work folder: the pipeline keeps a copy
    index.save(folder, overwrite=True)
    return folder


# -- the report --------------------------------------------------------------------------------------
def _test_report(
    dataset: Dataset,
    pipeline: Any,
    work: Path,
    config: BuildConfig,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], list[Any] | None]:
    """After every choice: the built pipeline and each ablation on test, against the off-the-shelf
    hybrid (BM25 + the start model, min-max 0.5 / 0.5), paired randomization test. Returns the
    plain numbers and the evaluations (for the chart)."""
    from pretriever.evaluation.measures import evaluate
    from pretriever.evaluation.significance import compare
    from pretriever.retrieval.fusion import fuse
    from pretriever.retrieval.pipeline import Pipeline

    try:
        qrels = dataset.qrels("test")
    except PretrieverError as exc:
        say(f"no test comparison: the test qrels cannot be read ({exc})")
        return {"error": str(exc)}, None
    queries = dataset.split_queries("test")
    members = pipeline.retrievers
    zero = {"bm25": _load(work / "bm25"), "dense": _load(work / "dense")}
    # off the shelf: the zero-label members searched without their feedback
    runs: dict[str, Run] = {"bm25": _without_feedback(zero["bm25"], queries),
                            "dense (off the shelf)": _without_feedback(zero["dense"], queries)}
    runs["hybrid (off the shelf)"] = fuse([runs["bm25"], runs["dense (off the shelf)"]], FUSION, k=DEPTH)
    if zero["bm25"].feedback is not None:  # what each zero-label stage adds, in the order built
        runs["+ bm25 feedback"] = Pipeline(zero, FUSION).search(queries, k=DEPTH)
    if "colbert" in members:
        zero["colbert"] = members["colbert"]
        runs["+ late interaction"] = Pipeline(zero, FUSION).search(queries, k=DEPTH)
    if config.train_split:  # then what the labels added
        runs["built pipeline"] = pipeline.search(queries, k=DEPTH)
    else:
        last = list(runs)[-1]  # the zero-label build is its last stage
        runs["built pipeline"] = runs[last] if last == "hybrid (off the shelf)" else runs.pop(last)
    evaluations = [evaluate(qrels, run, [METRIC, "Recall@100"], name=name) for name, run in runs.items()]
    order = [e.name for e in evaluations]
    baseline = order.index("hybrid (off the shelf)") if "hybrid (off the shelf)" in order else 0
    comparisons = compare(evaluations, METRIC, baseline=baseline, seed=config.seed)
    built = next(c for c in comparisons if c.name == "built pipeline")
    say(f"test: built {built.delta:+.4f} nDCG@10 over the off-the-shelf hybrid (p = {built.p_value:.4g})")
    return {
        "queries": len(qrels),
        "runs": {e.name: e.metrics for e in evaluations},
        "baseline": order[baseline],
        "significance": [
            {"run": c.name, "delta": c.delta, "p_value": c.p_value, "significant": c.significant}
            for c in comparisons
        ],
    }, evaluations


def _without_feedback(index: Any, queries: Queries) -> Run:
    """``index``'s run with its pseudo-relevance feedback switched off for the search."""
    feedback, index.feedback = index.feedback, None
    try:
        return index.search(queries, k=DEPTH)
    finally:
        index.feedback = feedback


def _write_report(
    folder: Path,
    dataset: Dataset,
    config: BuildConfig,
    result: BuildResult,
    pipeline: Any,
    dev_qrels: Qrels,
    evaluations: list[Any] | None,
) -> None:
    from pretriever.evaluation.report import bar_chart

    test = result.test or {}
    lines = [
        f"# pretriever build: {dataset.name}",
        "",
        f"{len(dataset.corpus):,} documents; "
        + (f"labels: {config.train_split}" if config.train_split else "no labels used")
        + ". "
        f"Model: `{config.model}`. Pipeline: {', '.join(pipeline.retrievers)}, fused by "
        f"{pipeline.fusion.method} ({pipeline.fusion.norm}, weights "
        f"{list(pipeline.fusion.weights) if pipeline.fusion.weights else 'equal'})"
        + (", reranked" if pipeline.reranker is not None else "")
        + ".",
        "",
        "## Stages",
        "",
        "| stage | what | dev nDCG@10 | kept | why | seconds |",
        "|---|---|---:|---|---|---:|",
    ]
    for s in result.stages:
        dev = f"{s.dev:.4f}" if s.dev is not None else "-"
        lines.append(
            f"| {s.name} | {s.what} | {dev} | {'yes' if s.kept else '**no**'} | {s.reason or '-'} | "
            f"{s.seconds:.0f} |"
        )
    dropped = [s for s in result.stages if not s.kept]
    if dropped:
        lines += ["", "Dropped: " + "; ".join(f"{s.name} ({s.reason})" for s in dropped) + "."]
    if test.get("runs"):
        lines += [
            "",
            f"## Test ({test['queries']} queries; read once, after every choice)",
            "",
            f"| run | nDCG@10 | Recall@100 | vs {test['baseline']} | p |",
            "|---|---:|---:|---:|---:|",
        ]
        sig = {c["run"]: c for c in test["significance"]}
        for name, metrics in test["runs"].items():
            c = sig.get(name)
            delta = f"{c['delta']:+.4f}" if c else "-"
            p = f"{c['p_value']:.4f}" if c else "-"
            lines.append(f"| {name} | {metrics[METRIC]:.4f} | {metrics['Recall@100']:.4f} | {delta} | {p} |")
        lines += ["", f"Paired randomization test over queries (10,000 permutations, seed {config.seed})."]
    elif test.get("error"):
        lines += ["", f"No test comparison: {test['error']}"]
    chart = None
    if dev_qrels and any(s.dev is not None for s in result.stages):
        from pretriever.evaluation.measures import Evaluation

        scored = [s for s in result.stages if s.dev is not None]
        chart = [Evaluation({METRIC: s.dev or 0.0}, {}, name=s.name) for s in scored]
        title = f"{dataset.name}: dev nDCG@10 of each stage's pipeline"
    elif evaluations:
        chart, title = evaluations, f"{dataset.name}: test nDCG@10 (after the build)"
    if chart:
        bar_chart(chart, [METRIC], folder / "chart.png", title)
        lines += ["", "![each stage](chart.png)"]
    lines += [
        "",
        "Every choice and number is in `build.json`. Evaluate the pipeline with "
        f"`pretriever evaluate --dataset {config.dataset} --retriever {result.folder}`.",
    ]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
