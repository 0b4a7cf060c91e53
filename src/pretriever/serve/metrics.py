"""Request counters and latency histograms in the Prometheus text exposition format (0.0.4).

Written by hand rather than with ``prometheus_client``: the server needs one counter, one
histogram and three gauges, and the format is a page of text
(https://prometheus.io/docs/instrumenting/exposition_formats/). Endpoints are labelled by their
route template (``/documents/{doc_id}``), never by the raw path, so labels stay few.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping

__all__ = ["Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Latency bucket bounds in seconds: a BM25 search is ~1 ms, a reranked batch up to seconds."""


class Metrics:
    """Thread-safe request counts by (method, endpoint, status code) and latency by (method, endpoint)."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # counts per bucket (not cumulative), sum

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        with self._lock:
            key = (method, endpoint, int(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            row = self._latency.setdefault((method, endpoint), [0.0] * (len(self.buckets) + 2))
            slot = next((i for i, bound in enumerate(self.buckets) if seconds <= bound), len(self.buckets))
            row[slot] += 1  # the last slot is +Inf only
            row[-1] += seconds

    def render(self, gauges: Mapping[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``gauges`` maps a metric name to (help text, value)."""
        with self._lock:
            requests = sorted(self._requests.items())
            latency = {key: list(row) for key, row in sorted(self._latency.items())}
        lines = ["# HELP pretriever_requests_total Requests answered, by method, endpoint and status code.",
                 "# TYPE pretriever_requests_total counter"]
        lines += [f'pretriever_requests_total{{method="{_label(m)}",endpoint="{_label(e)}",code="{c}"}} {n}'
                  for (m, e, c), n in requests]
        name = "pretriever_request_duration_seconds"
        lines += [f"# HELP {name} Time from a request's arrival to its response, by method and endpoint.",
                  f"# TYPE {name} histogram"]
        for (method, endpoint), row in latency.items():
            label = f'method="{_label(method)}",endpoint="{_label(endpoint)}"'
            cumulative = 0.0
            for bound, count in zip((*self.buckets, math.inf), row[:-1]):
                cumulative += count
                lines.append(f'{name}_bucket{{{label},le="{_number(bound)}"}} {_number(cumulative)}')
            lines.append(f'{name}_sum{{{label}}} {_number(row[-1])}')
            lines.append(f'{name}_count{{{label}}} {_number(cumulative)}')
        for metric, (help_text, value) in (gauges or {}).items():
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric} {_number(value)}"]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A label value escaped as the format asks (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))
