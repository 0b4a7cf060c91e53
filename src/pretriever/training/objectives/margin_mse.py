"""Margin-MSE distillation from a cross-encoder (Hofstätter et al. 2020, "Improving Efficient
Neural Ranking Models with Cross-Architecture Knowledge Distillation").

The student learns the teacher's score *margin* between a positive and a negative, not the raw
scores, so teacher and student need not share a scale. Student scores are cosine similarities
divided by ``temperature`` (0.05, the scale of InfoNCE), which gives them the range of a
cross-encoder's logit margins.
"""

from __future__ import annotations

from typing import Any


def margin_mse(queries: Any, documents: Any, teacher: Any, temperature: float = 0.05,
               weights: Any = None) -> Any:
    """``queries`` [B, d]; ``documents`` [B * (1 + n), d] as B groups of (positive, n negatives);
    ``teacher`` [B, 1 + n] teacher scores of the same pairs. Mean (weighted) squared error
    between the student's and the teacher's positive-minus-negative margins."""
    batch = queries.shape[0]
    group = documents.shape[0] // batch
    docs = documents.float().view(batch, group, -1)
    student = (docs @ queries.float().unsqueeze(-1)).squeeze(-1) / temperature  # [B, 1 + n]
    student_margin = student[:, :1] - student[:, 1:]
    teacher_margin = teacher[:, :1] - teacher[:, 1:]
    loss = ((student_margin - teacher_margin.float()) ** 2).mean(dim=1)
    if weights is not None:
        loss = loss * weights
    return loss.mean()
