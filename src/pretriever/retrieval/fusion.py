"""Rank fusion of several runs, over ranx (Bassani & Romelli 2022, "ranx.fuse").

Two methods: reciprocal rank fusion (Cormack et al. 2009; ``method="rrf"``, constant ``rrf_k``)
and the weighted sum of per-query normalised scores (``method="wsum"``, ``norm`` = "min-max" or
"z-score"; Fox & Shaw 1994's CombSUM with weights). Weights can be tuned on a dev/train split by
grid search (ranx.optimize_fusion); tuning on the test split is refused.

Min-max wsum, the default, is computed here with ranx's arithmetic (``_minmax_wsum``); the
other rules call ranx, whose kernels are numba functions with parallel regions: numba's default
threading layer aborts the whole process when two threads enter one at once (a server's threads
searching a pipeline), so calls into ranx take a process-wide lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from pretriever.errors import ConfigError
from pretriever.evaluation.measures import parse_metric
from pretriever.types import Qrels, Run

METHODS = ("wsum", "rrf")
RANX_LOCK = threading.Lock()  # one thread in ranx's numba parallel regions at a time
NORMS = ("min-max", "z-score")


@dataclass(frozen=True)
class Fusion:
    """How to combine runs: method, normalisation, weights (None = equal) and the RRF constant."""

    method: str = "wsum"
    norm: str = "min-max"
    weights: tuple[float, ...] | None = None
    rrf_k: int = 60

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown fusion method '{self.method}'; choose one of {', '.join(METHODS)}")
        if self.method == "wsum" and self.norm not in NORMS:
            raise ConfigError(f"unknown normalisation '{self.norm}'; choose one of {', '.join(NORMS)}")
        if self.weights is not None and any(w < 0 for w in self.weights):
            raise ConfigError("fusion weights must be non-negative")

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "norm": self.norm,
                "weights": list(self.weights) if self.weights else None, "rrf_k": self.rrf_k}


_RANX_NORM = {"min-max": "min-max", "z-score": "zmuv"}


def _ranx_runs(runs: Sequence[Run], queries: list[str]) -> list:
    from ranx import Run as RanxRun

    # ranx needs the same query ids in every run; a query a retriever did not answer gets an
    # empty list and contributes nothing from that retriever.
    return [RanxRun({q: dict(run.get(q, {})) for q in queries}, name=f"r{i}")
            for i, run in enumerate(runs)]


def fuse(runs: Sequence[Run], fusion: Fusion = Fusion(), k: int | None = None) -> Run:
    """Fuse runs into one; every query of any input run appears in the output (maybe empty)."""
    from ranx import fuse as ranx_fuse

    if not runs:
        raise ConfigError("nothing to fuse: give at least one run")
    queries = list(dict.fromkeys(q for run in runs for q in run))
    weights = fusion.weights or tuple(1.0 / len(runs) for _ in runs)
    if len(weights) != len(runs):
        raise ConfigError(f"{len(weights)} fusion weights given for {len(runs)} runs")
    # a run with no result at all contributes nothing (and ranx cannot normalise it)
    kept = [(run, w) for run, w in zip(runs, weights) if any(run.values())]
    if len(kept) <= 1:
        only = kept[0][0] if kept else {}
        fused: Run = {q: dict(only.get(q, {})) for q in queries}
    elif fusion.method == "wsum" and fusion.norm == "min-max":
        fused = _minmax_wsum([run for run, _ in kept], [w for _, w in kept], queries)
    else:
        with RANX_LOCK:
            kept_runs = _ranx_runs([run for run, _ in kept], queries)
            if fusion.method == "rrf":
                result = ranx_fuse(kept_runs, method="rrf", params={"k": fusion.rrf_k})
            else:
                result = ranx_fuse(kept_runs, norm=_RANX_NORM[fusion.norm], method="wsum",
                                   params={"weights": [w for _, w in kept]})
            as_dict = result.to_dict()
        fused = {q: {d: float(s) for d, s in as_dict.get(q, {}).items()} for q in queries}
    if k is not None:
        from pretriever.runs import sort_run

        fused = sort_run(fused, k)
    return fused


def _minmax_wsum(runs: Sequence[Run], weights: Sequence[float], queries: list[str]) -> Run:
    """ranx's min-max normalisation then weighted sum, in plain Python: the same float64 arithmetic
    in the same order (a test holds the two equal), without ranx's per-call conversion into numba
    typed dicts, which costs about 1 ms a query and dominates a served hybrid's fusion."""
    fused: Run = {}
    for q in queries:
        normed = []
        for run in runs:
            hits = run.get(q) or {}
            if hits:
                low, high = min(hits.values()), max(hits.values())
                spread = max(high - low, 1e-9)
                normed.append({d: (float(s) - low) / spread for d, s in hits.items()})
            else:
                normed.append({})
        combined: dict[str, float] = {}
        for hits in normed:
            for d in hits:
                if d not in combined:
                    total = 0.0
                    for w, other in zip(weights, normed):
                        total += w * other.get(d, 0.0)
                    combined[d] = total
        fused[q] = combined
    return fused


def _scaled(n: int, remaining: int, steps: int) -> list[tuple[float, ...]]:
    """Every vector of ``n`` non-negative multiples of 1/steps summing to remaining/steps."""
    if n == 1:
        return [(remaining / steps,)]
    return [(i / steps, *rest) for i in range(remaining + 1) for rest in _scaled(n - 1, remaining - i, steps)]


def tune_weights(
    qrels: Qrels, runs: Sequence[Run], fusion: Fusion = Fusion(), metric: str = "nDCG@10",
    step: float = 0.1,
) -> tuple[Fusion, float]:
    """Grid-search wsum weights (summing to 1, in ``step`` increments) maximising ``metric``.

    Returns the tuned fusion and its score on ``qrels``. Ties between weightings go to the most
    even one, so that a flat optimum does not pick an extreme. (ranx.optimize_fusion needs every
    run to answer every query, which a lexical run often does not; hence our own small search.)
    """
    from pretriever.evaluation.measures import evaluate

    if fusion.method != "wsum":
        raise ConfigError("only wsum fusion has weights to tune")
    if not 0 < step <= 0.5:
        raise ConfigError(f"step must be in (0, 0.5], got {step}")
    canonical = parse_metric(metric)[0]
    steps = round(1 / step)
    best: tuple[float, float, tuple[float, ...]] | None = None
    for weights in _scaled(len(runs), steps, steps):
        candidate = Fusion("wsum", fusion.norm, weights, fusion.rrf_k)
        score = evaluate(qrels, fuse(runs, candidate), [canonical]).metrics[canonical]
        evenness = -max(abs(w - 1 / len(runs)) for w in weights)
        if best is None or (score, evenness) > (best[0], best[1]):
            best = (score, evenness, weights)
    assert best is not None
    return Fusion("wsum", fusion.norm, best[2], fusion.rrf_k), best[0]
