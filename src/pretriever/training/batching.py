"""Grouping training examples into batches.

With in-batch negatives, two examples of the same query in one batch make one query's positive
the other's negative: a guaranteed false negative (sentence-transformers' NoDuplicatesBatchSampler
avoids the same). ``unique_query_batches`` keeps each query at most once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def unique_query_batches(examples: Sequence[T], size: int, query_of=lambda ex: ex.query_id) -> list[list[T]]:
    """Full batches of ``size`` in example order, an example whose query is already in the open
    batch deferred to a later one; leftovers that cannot fill a batch are dropped."""
    batches: list[list[T]] = []
    pending = list(examples)
    while len(pending) >= size:
        batch: list[T] = []
        seen: set = set()
        deferred: list[T] = []
        for i, ex in enumerate(pending):
            if len(batch) == size:
                deferred.extend(pending[i:])
                break
            key = query_of(ex)
            if key in seen:
                deferred.append(ex)
            else:
                seen.add(key)
                batch.append(ex)
        if len(batch) < size:
            break
        batches.append(batch)
        pending = deferred
    return batches
