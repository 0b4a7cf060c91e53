"""Evaluation: metrics by name (over ranx), per-query scores, seeded significance tests, reports."""

from pretriever.evaluation.measures import DEFAULT_METRICS, Evaluation, evaluate, parse_metric
from pretriever.evaluation.report import format_table, to_json
from pretriever.evaluation.significance import Comparison, compare, randomization_test, t_test

__all__ = ["DEFAULT_METRICS", "Comparison", "Evaluation", "compare", "evaluate", "format_table",
           "parse_metric", "randomization_test", "t_test", "to_json"]
