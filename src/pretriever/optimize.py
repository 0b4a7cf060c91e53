"""``optimize``: store a fast OpenVINO version of an encoder inside its model folder, with a guard.

int8 uses static quantisation (NNCF, transformer preset) calibrated on a sample of the user's own
corpus; bf16 stores the converted model, run with OpenVINO's bf16 precision hint. Afterwards a
separate sample of the corpus is encoded by the optimised model and by the fp32 torch model; if
their mean cosine is below ``min_cosine`` (0.995) the result is refused, unless forced. The model
folder still loads unchanged in plain sentence-transformers: the OpenVINO model lives in an
``openvino/`` subfolder with its own manifest (precision, calibration sample, quality, checksums).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pretriever._io import atomic_dir
from pretriever._manifest import write_manifest
from pretriever.data.corpus import Corpus
from pretriever.encoders.dense import DenseEncoder, bundled_model_path, resolve_model
from pretriever.encoders.openvino import (
    OV_DIR,
    OV_FORMAT_VERSION,
    OV_KIND,
    OV_XML,
    OpenVINORunner,
    convert,
    pool,
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
    """What ``optimize`` wrote and how close the optimised vectors are to fp32."""

    folder: Path
    precision: str
    calibration_docs: int
    check_docs: int
    mean_cosine: float
    min_cosine: float


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


def _encode(st: Any, runner: OpenVINORunner, texts: list[str], prompt: str, pooling: str,
            max_length: int, batch_size: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(texts), batch_size):
        features = tokenize(st, [prompt + t for t in texts[i : i + batch_size]], max_length)
        out.append(pool(runner(features), features["attention_mask"], pooling))
    vectors = np.concatenate(out)
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def optimize(
    model: str | Path,
    corpus: Corpus,
    *,
    precision: str = "int8",
    out: str | Path | None = None,
    calibration: int = 300,
    check: int = 200,
    seed: int = 0,
    min_cosine: float = 0.995,
    force: bool = False,
    corpus_name: str | None = None,
) -> OptimizeReport:
    """Convert (and for int8, quantise) ``model`` and store it in ``<folder>/openvino/``.

    ``out``: copy the model folder there first (required for the bundled model, which lives in
    site-packages); otherwise the model folder itself gains the subfolder. Raises
    QualityGuardError when the mean cosine to fp32 on the check sample is below ``min_cosine``
    and ``force`` is false; nothing is written then.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; choose int8 or bf16")
    precision = PRECISIONS[precision]
    source = Path(resolve_model(model))
    if not source.is_dir():
        raise ConfigError(f"'{model}' is not a local model folder; download it first")
    if out is None and source == bundled_model_path():
        raise ConfigError("the bundled model lives inside the installed package: pass --out DIR to "
                          "optimise a copy of it")
    if out is not None and Path(out).exists():
        raise PretrieverError(f"{out} already exists; choose another --out")
    reference = DenseEncoder(source, backend="torch", precision="float32")
    st = reference.st
    spec = reference.spec()
    if spec["normalize"] is not True:
        raise ConfigError("only cosine-similarity models can be optimised and checked (for now)")
    max_length = int(st.max_seq_length)
    calibration_texts, check_texts = _sample(corpus, calibration, check, seed)
    prompt = spec["prompts"]["document"]
    ov_model = convert(st, max_length)
    if precision == "int8":
        ov_model = quantize_int8(ov_model, st, [prompt + t for t in calibration_texts], max_length)
    runner = OpenVINORunner(ov_model, precision)
    fast = _encode(st, runner, check_texts, prompt, spec["pooling"], max_length)
    exact = reference.encode_documents(check_texts)
    cosines = (fast * exact).sum(axis=1)
    mean, low = float(cosines.mean()), float(cosines.min())
    if mean < min_cosine and not force:
        raise QualityGuardError(
            f"the {precision} model's vectors are too far from fp32 on {len(check_texts)} documents "
            f"of the corpus: mean cosine {mean:.4f} (min {low:.4f}), below {min_cosine}; nothing "
            "was written. Try more calibration documents (--calibration 1000), --precision bf16, "
            "or --force to keep it anyway"
        )
    n_cal = len(calibration_texts) if precision == "int8" else 0
    params = {"precision": precision, "max_length": max_length, "pooling": spec["pooling"],
              "base_weights_sha256": spec["weights_sha256"]}
    provenance = {
        "calibration": {"corpus": corpus_name, "corpus_sha256": corpus.sha256, "documents": n_cal,
                        "seed": seed},
        "check": {"documents": len(check_texts), "mean_cosine": mean, "min_cosine": low,
                  "threshold": min_cosine, "forced": bool(force and mean < min_cosine)},
    }
    if out is not None:  # a copy of the model folder, with the OpenVINO model inside, atomically
        target = Path(out)
        with atomic_dir(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(OV_DIR))
            _write_openvino(tmp / OV_DIR, ov_model, params, provenance)
    else:
        target = source
        with atomic_dir(source / OV_DIR, overwrite=True) as tmp:
            _write_openvino(tmp, ov_model, params, provenance)
    return OptimizeReport(target, precision, n_cal, len(check_texts), mean, low)


def _write_openvino(folder: Path, ov_model: Any, params: dict[str, Any], provenance: dict[str, Any]) -> None:
    import openvino

    folder.mkdir(parents=True, exist_ok=True)
    openvino.save_model(ov_model, str(folder / OV_XML), compress_to_fp16=False)
    write_manifest(folder, kind=OV_KIND, format_version=OV_FORMAT_VERSION, params=params,
                   provenance=provenance,
                   libraries=("openvino", "nncf", "torch", "transformers", "sentence-transformers"))
