"""Model soups (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models
improves accuracy without increasing inference time").

Fine-tuned models that share a starting point can be averaged weight by weight. Uniform soup:
the mean of all, or a weighted mean (with a fine-tuned model and its starting point, the
weight-space ensemble WiSE-FT of Wortsman et al. 2022, "Robust fine-tuning of zero-shot models",
which keeps what the start knew out of domain). Greedy soup: models sorted by their dev score,
each added only if the soup's dev score does not drop. Only compatible models are mixed: same
parameters and shapes, and the same pooling, prompts, normalisation and max length (what changes
the vectors besides the weights); otherwise the soup would silently lose a prefix or a pooling
mode.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretriever.errors import ConfigError


@dataclass
class SoupReport:
    """The soup's folder, which models went in, and the dev scores seen (greedy)."""

    folder: Path
    ingredients: list[str]
    scores: dict[str, float] = field(default_factory=dict)
    soup_score: float | None = None


def _encoder(model: str | Path) -> Any:
    from pretriever.encoders.dense import DenseEncoder

    return DenseEncoder(model, backend="torch", precision="float32")


def _check_compatible(encoders: Sequence[Any]) -> None:
    keys = ("prompts", "max_length", "pooling", "include_prompt", "normalize", "similarity", "dim")
    first = encoders[0]
    reference = {k: first.spec()[k] for k in keys}
    names = list(first.st.state_dict())
    shapes = {k: tuple(v.shape) for k, v in first.st.state_dict().items()}
    for other in encoders[1:]:
        spec = {k: other.spec()[k] for k in keys}
        if spec != reference:
            diff = [k for k in keys if spec[k] != reference[k]]
            raise ConfigError(f"{other.model} differs from {first.model} in {', '.join(diff)}: models "
                              "in a soup must share pooling, prompts and max length")
        state = other.st.state_dict()
        if list(state) != names or any(tuple(v.shape) != shapes[k] for k, v in state.items()):
            raise ConfigError(f"{other.model} has other parameters than {first.model}: only models "
                              "fine-tuned from the same base can be averaged")


def average(encoders: Sequence[Any], weights: Sequence[float] | None = None) -> dict[str, Any]:
    """Element-wise mean of the models' weights (float32 accumulation), weighted by ``weights``
    (normalised to sum 1) when given."""
    import torch

    states = [e.st.state_dict() for e in encoders]
    share = _shares(weights, len(states))
    out = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            out[key] = sum(w * s[key].float() for w, s in zip(share, states)).to(value.dtype)
        else:
            out[key] = value.clone()  # integer buffers (position ids): identical in every model
    return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for k, v in out.items()}


def _shares(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ConfigError(f"{len(weights)} weights for {n} models: give one weight per model")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"soup weights must be finite, non-negative and not all zero, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def soup(models: Sequence[str | Path], out: str | Path, *, greedy: bool = False,
         weights: Sequence[float] | None = None, score: Callable[[Any], float] | None = None,
         overwrite: bool = False) -> SoupReport:
    """Average ``models`` into a new model folder at ``out``.

    ``weights``: one per model for a weighted mean (uniform soup only). ``greedy`` needs
    ``score(encoder) -> float`` (a dev metric, higher is better); see ``dev_scorer``.
    """
    if len(models) < 2:
        raise ConfigError("a soup needs at least two models")
    if greedy and weights is not None:
        raise ConfigError("weights are for a uniform soup; a greedy soup weighs its ingredients equally")
    shares = _shares(weights, len(models))  # bad weights are refused before any model loads
    if greedy and score is None:
        raise ConfigError("a greedy soup needs a dev set to score models on (--dataset and --split)")
    encoders = [_encoder(m) for m in models]
    _check_compatible(encoders)
    base = encoders[0]
    if not greedy:
        base.st.load_state_dict(average(encoders, shares))
        recipe: dict[str, Any] = {"method": "uniform" if weights is None else "weighted",
                                  "ingredients": [str(m) for m in models]}
        if weights is not None:
            recipe["weights"] = shares
        base.save(out, overwrite=overwrite, provenance={"soup": recipe})
        return SoupReport(Path(out), [str(m) for m in models])
    assert score is not None
    scores = {str(m): float(score(e)) for m, e in zip(models, encoders)}
    ranked = sorted(zip(models, encoders), key=lambda me: -scores[str(me[0])])
    chosen = [ranked[0]]
    best = scores[str(ranked[0][0])]
    mixer = _encoder(models[0])
    for model, encoder in ranked[1:]:
        mixer.st.load_state_dict(average([e for _, e in chosen] + [encoder]))
        value = float(score(mixer))
        if value >= best:
            chosen.append((model, encoder))
            best = value
    mixer.st.load_state_dict(average([e for _, e in chosen]))
    names = [str(m) for m, _ in chosen]
    mixer.save(out, overwrite=overwrite, provenance={"soup": {"method": "greedy", "ingredients": names,
                                                             "dev_scores": scores, "soup_score": best}})
    return SoupReport(Path(out), names, scores, best)


def dev_scorer(dataset: Any, split: str = "dev", metric: str = "nDCG@10", *,
               progress: bool = False) -> Callable[[Any], float]:
    """``score(encoder)``: dense retrieval over the dataset's corpus, ``metric`` on ``split``
    (``progress``: report each corpus encoding)."""
    if split == "test":
        raise ConfigError("a greedy soup must not be selected on the test split; use dev")
    from pretriever.evaluation.measures import evaluate
    from pretriever.indexes.dense import FlatIndex

    qrels = dataset.qrels(split)
    queries = dataset.split_queries(split)

    def score(encoder: Any) -> float:
        encoder.__dict__.pop("_weights_sha256", None)  # weights change between calls
        with tempfile.TemporaryDirectory(prefix="soup-") as work:
            index = FlatIndex(encoder, progress=progress, work_dir=work).build(dataset.corpus)
            return evaluate(qrels, index.search(queries, k=100), [metric]).metrics[metric]

    return score
