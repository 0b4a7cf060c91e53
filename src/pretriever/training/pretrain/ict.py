"""Inverse Cloze Task (Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering"; Chang et al. 2020, "Pre-training Tasks for Embedding-based Large-scale
Retrieval").

A random sentence of a document is the pseudo-query and the document its positive. With
probability ``remove_rate`` (0.9 in both papers) the sentence is removed from the positive, so
the model must learn the context a sentence belongs to rather than lexical overlap; the
remaining 10% keep it, so exact matches are still rewarded. In-batch negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

from pretriever.training.pretrain._text import Doc, Pair, rng_for, sentences


def ict_pairs(docs: Sequence[Doc], *, remove_rate: float = 0.9, seed: int = 42, epoch: int = 0) -> list[Pair]:
    """One pair per document with at least two sentences (a lone sentence has no context)."""
    if not 0.0 <= remove_rate <= 1.0:
        raise ValueError(f"remove_rate must be in [0, 1], got {remove_rate}")
    rng = rng_for(seed, epoch, "ict")
    pairs = []
    for doc in docs:
        parts = sentences(doc.text)
        if len(parts) < 2:
            continue
        i = int(rng.integers(len(parts)))
        keep = bool(rng.random() >= remove_rate)
        context = parts if keep else parts[:i] + parts[i + 1 :]
        body = " ".join(context)
        pairs.append(Pair(parts[i], f"{doc.title}. {body}" if doc.title else body, doc.id, keep))
    return pairs
