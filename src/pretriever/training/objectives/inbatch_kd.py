"""In-batch distillation: the student matches the teacher's score distribution over every
document of the batch (Lin et al. 2021, "In-Batch Negatives for Knowledge Distillation with
Tightly-Coupled Teachers for Dense Retrieval"; the in-batch half of TAS-B's dual supervision,
Hofstätter et al. 2021).

Margin-MSE on a query's own candidates says nothing about the other documents of the batch, so
the student may drift on them; the teacher's scores for all of them cost nothing to compute when
the teacher is cheap (here the frozen starting model plus BM25), and with topic-clustered batches
many of them are near misses worth ranking.
"""

from __future__ import annotations

from typing import Any


def inbatch_kl(queries: Any, documents: Any, teacher: Any, temperature: float = 0.05) -> Any:
    """``queries`` [B, d]; ``documents`` [N, d]; ``teacher`` [B, N] teacher scores on the student's
    scale (cosine / temperature). Mean over queries of KL(softmax(teacher) || softmax(student))."""
    import torch.nn.functional as F

    student = queries.float() @ documents.float().T / temperature
    target = F.log_softmax(teacher.float(), dim=1)
    return F.kl_div(F.log_softmax(student, dim=1), target, log_target=True, reduction="batchmean")
