"""``optimize``: store a fast OpenVINO version of an encoder or reranker inside its model folder,
with a quality guard.

int8 uses static quantisation (NNCF, transformer preset) calibrated on a sample of the user's own
corpus; bf16 stores the converted model, run with OpenVINO's bf16 precision hint. Afterwards a
separate sample of the corpus is encoded by the optimised model and by the fp32 torch model; if
their mean cosine is below ``min_quality`` (0.995) the result is refused. A
cross-encoder has no corpus queries to calibrate on, so it gets pseudo-queries (a document's first
words) paired with that document and with others, and the check compares their scores. The model
folder still loads unchanged in plain sentence-transformers: the OpenVINO model lives in an
``openvino/`` subfolder with its own manifest (precision, calibration sample, quality, checksums).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pretriever._io import atomic_dir, fresh_output
from pretriever._manifest import write_manifest
from pretriever._progress import Progress
from pretriever.data.corpus import Corpus
from pretriever.encoders.backends import bundled_model_path, resolve_model
from pretriever.encoders.dense import DenseEncoder
from pretriever.encoders.idf_pooling import token_weights
from pretriever.encoders.openvino import (
    OV_DIR,
    OV_FORMAT_VERSION,
    OV_KIND,
    OV_XML,
    OpenVINORunner,
    convert,
    pool,
    pooling_mask,
    quantize_int8,
    tokenize,
)
from pretriever.errors import ConfigError, PretrieverError

PRECISIONS = {"int8": "int8", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32",
              "float32": "float32"}


class QualityGuardError(PretrieverError):
    """The optimised model's vectors drift too far from the fp32 model's."""


@dataclass(frozen=True)
class OptimizeReport:
    """What ``optimize`` wrote and how close the optimised model's outputs are to fp32.

    ``measure`` names ``quality``: "mean cosine" of document vectors for an encoder, "score
    correlation" (Pearson) of logits for a cross-encoder. ``worst`` is the minimum cosine for an
    encoder, the share of pseudo-queries whose top document is unchanged for a cross-encoder.
    """

    folder: Path
    precision: str
    calibration_docs: int
    check_docs: int
    measure: str
    quality: float
    worst: float


def _sample(corpus: Corpus, calibration: int, check: int, seed: int) -> tuple[list[str], list[str]]:
    """Two disjoint random samples of non-empty documents (title + text)."""
    texts = corpus.contents()
    candidates = [i for i, t in enumerate(texts) if t.strip()]
    if len(candidates) < 2:
        raise ConfigError("the corpus needs at least two non-empty documents to calibrate and check")
    order = np.random.default_rng(seed).permutation(candidates)
    n_cal = min(calibration, len(order) // 2)
    n_check = min(check, len(order) - n_cal)
    return [texts[i] for i in order[:n_cal]], [texts[i] for i in order[n_cal : n_cal + n_check]]


def _pseudo_pairs(texts: list[str], seed: int, group: int = 8) -> list[tuple[str, str]]:
    """(pseudo-query, document) pairs from documents alone, for cross-encoders: the first words of
    a document paired with itself and ``group - 1`` other documents (a spread of relevance)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i, text in enumerate(texts):
        query = " ".join(text.split()[:12])
        others = rng.choice(len(texts), size=min(group - 1, len(texts) - 1), replace=False)
        pairs.append((query, text))
        pairs.extend((query, texts[j]) for j in others if j != i)
    return pairs


class _Dense:
    """What optimize needs from a bi-encoder: conversion inputs and a vector-level check."""

    measure = "mean cosine"
    float_ops: tuple[str, ...] = ()  # every op quantised: within 0.003 nDCG@10 of fp32 as it is

    def __init__(self, source: Path) -> None:
        self.reference = DenseEncoder(source, backend="torch", precision="float32")
        self.st = self.reference.st
        spec = self.reference.spec()
        if spec["normalize"] is not True:
            raise ConfigError("only cosine-similarity models can be optimised and checked (for now)")
        self.pooling, self.prompt = spec["pooling"], spec["prompts"]["document"]
        self.token_weights = token_weights(self.st)  # IDF pooling: the int8 check weighs tokens too
        self.max_length = int(self.st.max_seq_length)
        self.module, self.tokenizer, self.base_sha256 = self.st[0].auto_model, self.st.tokenizer, \
            spec["weights_sha256"]

    def calibrate(self, ov_model: Any, texts: list[str]) -> Any:
        return quantize_int8(ov_model, self.tokenizer, [self.prompt + t for t in texts], self.max_length)

    def check(self, runner: OpenVINORunner, texts: list[str]) -> tuple[float, float]:
        fast = []
        for i in range(0, len(texts), 32):
            features = tokenize(self.tokenizer, [self.prompt + t for t in texts[i : i + 32]], self.max_length)
            fast.append(pool(runner(features), pooling_mask(features, self.token_weights), self.pooling))
        vectors = np.concatenate(fast)
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        cosines = (vectors * self.reference.encode_documents(texts)).sum(axis=1)
        return float(cosines.mean()), float(cosines.min())


CROSS_FLOAT_OPS = (r".*layer\.\d+\.output\.dense.*",)  # BERT-style FFN output projections


class _Cross:
    """What optimize needs from a cross-encoder: pseudo-pair calibration and a score-level check."""

    measure = "score correlation"
    float_ops = CROSS_FLOAT_OPS

    def __init__(self, source: Path, seed: int) -> None:
        from pretriever.encoders.cross import Reranker

        self.reference = Reranker.load(source, backend="torch", precision="float32")
        self.seed = seed
        self.max_length = self.reference.max_length
        self.module, self.tokenizer = self.reference.st.transformers_model, self.reference.st.tokenizer
        self.base_sha256 = self.reference.spec()["weights_sha256"]
        self.pooling = None

    def calibrate(self, ov_model: Any, texts: list[str]) -> Any:
        # A reranker's order within a query's top 20 turns on small score differences. Measured on
        # SciFact (benchmarks/RESULTS.md): int8 everywhere lost 0.0046 nDCG@10; keeping the FFN
        # output projections (fed by GELU's long-tailed activations) in float and calibrating one
        # pair at a time (no padding in the statistics), and running those in bf16, gained 0.0008,
        # at 142 pairs/s against 149 for int8 everywhere (f32 for the float ops: 99 pairs/s).
        pairs = _pseudo_pairs(texts, self.seed, group=2)
        return quantize_int8(ov_model, self.tokenizer, [q for q, _ in pairs], self.max_length,
                             pairs_with=[d for _, d in pairs], batch_size=1, keep_float=self.float_ops)

    def check(self, runner: OpenVINORunner, texts: list[str]) -> tuple[float, float]:
        group = 8
        pairs = _pseudo_pairs(texts, self.seed + 1, group=group)
        exact = self.reference.score(pairs)
        fast = np.concatenate([
            np.asarray(runner(tokenize(self.tokenizer, [q for q, _ in pairs[i : i + 32]], self.max_length,
                                       pairs_with=[d for _, d in pairs[i : i + 32]])),
                       dtype=np.float32).reshape(-1)
            for i in range(0, len(pairs), 32)
        ])
        correlation = float(np.corrcoef(fast, exact)[0, 1]) if exact.std() > 0 else 1.0
        tops = [np.argmax(fast[i : i + group]) == np.argmax(exact[i : i + group])
                for i in range(0, len(pairs) - group + 1, group)]
        return correlation, float(np.mean(tops)) if tops else 1.0


def optimize(
    model: str | Path,
    corpus: Corpus,
    *,
    precision: str = "int8",
    out: str | Path | None = None,
    calibration: int = 300,
    check: int = 200,
    seed: int = 0,
    min_quality: float = 0.995,
    corpus_name: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> OptimizeReport:
    """Convert (and for int8, quantise) ``model`` and store it in ``<folder>/openvino/``.

    ``model`` is a bi-encoder or a cross-encoder (reranker) folder. ``out``: copy the model folder
    there first (required for the bundled model, which lives in site-packages); otherwise the
    model folder itself gains the subfolder (an existing one only with ``overwrite``). Raises
    QualityGuardError when the quality measure on the check sample (mean cosine to fp32 for an
    encoder, correlation of scores with fp32 for a reranker) is below ``min_quality``; nothing is
    written then (lower ``min_quality`` to keep such a model).
    """
    from pretriever.encoders.cross import is_cross_encoder_folder

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; choose int8 or bf16")
    precision = PRECISIONS[precision]
    source = Path(resolve_model(model))
    if not source.is_dir():
        raise ConfigError(f"'{model}' is not a local model folder; download it first")
    if out is None and source == bundled_model_path():
        raise ConfigError("the bundled model lives inside the installed package: pass --out DIR to "
                          "optimise a copy of it")
    if out is not None:
        fresh_output(out, overwrite)
    if out is None and (source / OV_DIR).exists() and not overwrite:
        raise PretrieverError(f"{source} already holds an OpenVINO model ({OV_DIR}/); pass --overwrite to "
                              "replace it, or --out DIR to optimise a copy")
    target_model = _Cross(source, seed) if is_cross_encoder_folder(source) else _Dense(source)
    calibration_texts, check_texts = _sample(corpus, calibration, check, seed)
    stages = 3 if precision == "int8" else 2
    with Progress(stages, f"optimizing to {precision}", "stages", enabled=progress) as bar:
        ov_model = convert(target_model.module, target_model.tokenizer, target_model.max_length)
        bar.update()
        if precision == "int8":
            bar.write(f"calibrating int8 on {len(calibration_texts)} documents")
            ov_model = target_model.calibrate(ov_model, calibration_texts)
            bar.update()
        runner = OpenVINORunner(ov_model, precision, float_ops_bf16=bool(target_model.float_ops))
        quality, worst = target_model.check(runner, check_texts)
        bar.update()
    measure = target_model.measure
    if quality < min_quality:
        raise QualityGuardError(
            f"the {precision} model is too far from fp32 on {len(check_texts)} documents of the "
            f"corpus: {measure} {quality:.4f} (worst {worst:.4f}), below {min_quality}; nothing was "
            "written. Try more calibration documents (--calibration 1000), --precision bfloat16, or "
            f"--min-quality {quality:.3f} to keep it anyway"
        )
    n_cal = len(calibration_texts) if precision == "int8" else 0
    params = {"precision": precision, "max_length": target_model.max_length,
              "pooling": target_model.pooling, "base_weights_sha256": target_model.base_sha256}
    if precision == "int8" and target_model.float_ops:
        # the ops left unquantised run in bf16 where the CPU computes it (as the check above did)
        params.update(float_ops=list(target_model.float_ops), float_ops_bf16=True)
    provenance = {
        "calibration": {"corpus": corpus_name, "corpus_sha256": corpus.sha256, "documents": n_cal,
                        "seed": seed},
        "check": {"documents": len(check_texts), "measure": measure, "quality": quality,
                  "worst": worst, "threshold": min_quality},
    }
    if out is not None:  # a copy of the model folder, with the OpenVINO model inside, atomically
        target = Path(out)
        with atomic_dir(target, overwrite=overwrite) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(OV_DIR))
            _write_openvino(tmp / OV_DIR, ov_model, params, provenance)
    else:
        target = source
        with atomic_dir(source / OV_DIR, overwrite=True) as tmp:
            _write_openvino(tmp, ov_model, params, provenance)
    return OptimizeReport(target, precision, n_cal, len(check_texts), measure, quality, worst)


def _write_openvino(folder: Path, ov_model: Any, params: dict[str, Any], provenance: dict[str, Any]) -> None:
    import openvino

    folder.mkdir(parents=True, exist_ok=True)
    openvino.save_model(ov_model, str(folder / OV_XML), compress_to_fp16=False)
    write_manifest(folder, kind=OV_KIND, format_version=OV_FORMAT_VERSION, params=params,
                   provenance=provenance,
                   libraries=("openvino", "nncf", "torch", "transformers", "sentence-transformers"))
