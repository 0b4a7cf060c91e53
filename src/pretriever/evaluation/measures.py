"""Metrics named as strings ("nDCG@10", "Recall@100", "MRR@10", "MAP@100", "P@10"), computed by ranx.

What pretriever owns on top of ranx:
- one spelling of every metric across CLI, configs and reports (aliases are accepted on input);
- ties broken as trec_eval breaks them (doc id, reverse order; ``runs.ranked``) before ranx sees
  the run (ranx's own sort leaves ties in arbitrary order, so two runs with equal scores could
  score differently), so a saved run scores the same in trec_eval;
- queries judged in the qrels but missing from the run score 0, and are counted; queries in the
  run but not in the qrels are ignored, and are counted; no overlap at all is an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pretriever.errors import ConfigError
from pretriever.runs import ranked
from pretriever.types import Qrels, Run

DEFAULT_METRICS = ("nDCG@10", "Recall@100", "MRR@10", "MAP@100", "P@10")

# canonical display name -> ranx name (without the cutoff)
_CANONICAL = {"nDCG": "ndcg", "Recall": "recall", "MRR": "mrr", "MAP": "map", "P": "precision"}
_ALIASES = {
    "ndcg": "nDCG", "recall": "Recall", "r": "Recall", "mrr": "MRR", "rr": "MRR", "map": "MAP",
    "ap": "MAP", "p": "P", "precision": "P",
}
_PATTERN = re.compile(r"^\s*([A-Za-z]+)\s*(?:@\s*(\d+))?\s*$")


def parse_metric(name: str) -> tuple[str, str]:
    """Return (canonical name, ranx name) for a metric string such as "ndcg@10" or "R@100"."""
    match = _PATTERN.match(name)
    family = _ALIASES.get(match.group(1).lower()) if match else None
    if match is None or family is None:
        raise ConfigError(
            f"unknown metric '{name}'; use one of nDCG@k, Recall@k, MRR@k, MAP@k, P@k "
            "(e.g. nDCG@10, Recall@100), or MAP / MRR without a cutoff"
        )
    cutoff = match.group(2)
    if cutoff is not None and int(cutoff) < 1:
        raise ConfigError(f"metric '{name}': the cutoff must be at least 1")
    if cutoff is None and family in ("nDCG", "Recall", "P"):
        raise ConfigError(f"metric '{name}' needs a cutoff, e.g. {family}@10")
    suffix = f"@{cutoff}" if cutoff else ""
    return f"{family}{suffix}", f"{_CANONICAL[family]}{suffix}"


@dataclass(frozen=True)
class Evaluation:
    """Scores of one run against one set of qrels.

    ``per_query`` maps each judged query to its score on every metric; ``missing`` lists judged
    queries the run did not answer (scored 0); ``ignored`` lists run queries without judgements.
    """

    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    missing: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    name: str = "run"
    notes: tuple[str, ...] = field(default=())

    @property
    def n_queries(self) -> int:
        return len(self.per_query)

    def scores(self, metric: str) -> list[float]:
        """Per-query scores of one metric, in the (sorted) query order of ``per_query``."""
        canonical = parse_metric(metric)[0]
        return [values[canonical] for values in self.per_query.values()]

    def to_dict(self, *, per_query: bool = False) -> dict[str, Any]:
        """Plain JSON-ready data; ``metrics`` maps metric names to values."""
        out: dict[str, Any] = {
            "name": self.name,
            "metrics": dict(self.metrics),
            "queries": self.n_queries,
            "missing_queries": len(self.missing),
            "ignored_queries": len(self.ignored),
            "notes": list(self.notes),
        }
        if per_query:
            out["per_query"] = self.per_query
        return out


def _rank_scores(scores: dict[str, float]) -> dict[str, float]:
    """Replace scores by strictly decreasing values that encode the rank order of ``runs.ranked``."""
    hits = ranked(scores)
    n = len(hits)
    return {h.doc_id: float(n - h.rank + 1) for h in hits}


def evaluate(
    qrels: Qrels,
    run: Run,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    name: str = "run",
    notes: Sequence[str] = (),
) -> Evaluation:
    """Score ``run`` against ``qrels`` on the named metrics; per-query scores included.

    ``notes`` are carried into the result (e.g. that queries and documents were encoded on
    different backends).

    Raises ConfigError for an unknown metric and when the run answers none of the judged queries
    (usually the wrong split or dataset).
    """
    from ranx import Qrels as RanxQrels
    from ranx import Run as RanxRun
    from ranx import evaluate as ranx_evaluate

    if not metrics:
        raise ConfigError("give at least one metric, e.g. nDCG@10")
    parsed = [parse_metric(m) for m in metrics]
    judged = {qid: docs for qid, docs in qrels.items() if docs}
    if not judged:
        raise ConfigError("the qrels are empty: nothing to evaluate against")
    missing = tuple(sorted(q for q in judged if not run.get(q)))
    ignored = tuple(sorted(q for q in run if q not in judged))
    if len(missing) == len(judged):
        raise ConfigError(
            f"the run answers none of the {len(judged)} judged queries (it has {len(run)} queries, "
            f"e.g. {', '.join(list(run)[:3]) or 'none'}; the qrels have e.g. "
            f"{', '.join(list(judged)[:3])}): check the dataset and --split"
        )
    comparable = {qid: _rank_scores(run.get(qid, {})) for qid in judged}
    ranx_qrels = RanxQrels({q: dict(d) for q, d in judged.items()})
    ranx_run = RanxRun(comparable)
    ranx_names = [r for _, r in parsed]
    unique = list(dict.fromkeys(ranx_names))
    # save_results_in_run=True: with False, ranx 0.3 mis-keys the result of a single metric.
    values = ranx_evaluate(ranx_qrels, ranx_run, unique, return_mean=False, save_results_in_run=True)
    if len(unique) == 1:
        values = {unique[0]: values}
    order = list(ranx_qrels.keys())
    per_query = {
        qid: {canon: float(values[rname][i]) for canon, rname in parsed}
        for i, qid in enumerate(order)
    }
    means = {
        canon: float(sum(v[canon] for v in per_query.values()) / len(per_query))
        for canon, _ in parsed
    }
    notes = list(notes)  # e.g. how the run was produced
    if missing:
        notes.append(f"{len(missing)} judged queries have no results in the run and score 0")
    if ignored:
        notes.append(f"{len(ignored)} run queries have no judgements and are ignored")
    return Evaluation(means, per_query, missing, ignored, name, tuple(notes))
