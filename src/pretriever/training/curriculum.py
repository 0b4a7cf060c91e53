"""Difficulty curricula for rerankers (MacAvaney et al. 2020, "Training Curricula for Open Domain
Answer Re-Ranking", SIGIR).

Early in training, samples a heuristic judges difficult get a small weight; the weights anneal
linearly to uniform (1) by epoch ``m``: ``w = D + min(t / m, 1) * (1 - D)``, where ``D`` in [0, 1]
is the sample's easiness and ``t`` the training progress in epochs. The easiness heuristic is the
paper's reciprocal-rank one over the first-stage ranking: a positive the first stage ranks at
``r`` has easiness ``1 / r``; a negative at rank ``r`` has ``1 - 1 / r`` (a negative ranked first
is the hardest). A group (a positive and its negatives) takes the mean over its members.
"""

from __future__ import annotations

from collections.abc import Sequence


def positive_easiness(rank: int | None) -> float:
    """1 / rank of a relevant document (0 when the first stage did not retrieve it)."""
    return 1.0 / rank if rank else 0.0


def negative_easiness(rank: int | None) -> float:
    """1 - 1 / rank of a non-relevant document (1 when the first stage did not retrieve it)."""
    return 1.0 - 1.0 / rank if rank else 1.0


def group_easiness(positive_rank: int | None, negative_ranks: Sequence[int | None]) -> float:
    """Mean easiness of a positive and its negatives."""
    values = [positive_easiness(positive_rank), *(negative_easiness(r) for r in negative_ranks)]
    return sum(values) / len(values)


def curriculum_weight(easiness: float, epoch_progress: float, anneal_epochs: float) -> float:
    """The sample weight at ``epoch_progress`` (epochs done, fractional): 1 once annealed."""
    if anneal_epochs <= 0:
        return 1.0
    ramp = min(max(epoch_progress, 0.0) / anneal_epochs, 1.0)
    return easiness + ramp * (1.0 - easiness)
