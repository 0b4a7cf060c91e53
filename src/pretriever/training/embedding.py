"""Embedding texts with gradients, as every bi-encoder trainer does it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EMBED_CHUNK = 32  # texts per forward pass, sorted by length


def embed(st: Any, texts: Sequence[str], max_length: int, *, normalize: bool,
          chunk: int = EMBED_CHUNK, task: str | None = None) -> Any:
    """Sentence embeddings of ``texts`` in input order, computed in length-sorted chunks (less
    padding, the same values), L2-normalised when the model's similarity is cosine. ``task``
    ("query" or "document") picks the route of a model whose sides differ (a sparse ``Router``)."""
    import torch

    device = st.device
    tokens = st.tokenizer(list(texts), truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: -len(tokens["input_ids"][i]))
    parts = []
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        features = st.tokenizer.pad({k: [tokens[k][i] for i in rows] for k in tokens},
                                    return_tensors="pt").to(device)
        features = dict(features)
        if task is not None:
            features["task"] = task
        parts.append(st(features)["sentence_embedding"])
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    vectors = torch.cat(parts)[inverse.to(device)]
    return torch.nn.functional.normalize(vectors, dim=-1) if normalize else vectors
