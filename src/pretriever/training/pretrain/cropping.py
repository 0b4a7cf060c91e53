"""Contrastive cropping (Izacard et al. 2022, "Unsupervised Dense Information Retrieval with
Contrastive Learning", Contriever).

Two independent random spans of one document, each ``ratio_min``..``ratio_max`` of its words,
are a positive pair; other documents' crops in the batch are negatives. Independent (possibly
overlapping) crops teach the model that a document's parts share a topic. Optionally, as MoCo
(He et al. 2020), a momentum copy of the encoder embeds the keys and a queue of earlier keys
adds negatives beyond the batch (``KeyQueue``). Contriever also deletes 10% of the words of each
crop; that augmentation is left out here, since it mostly matters when training from scratch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from pretriever.training.pretrain._text import Doc, Pair, rng_for


def crop(words: Sequence[str], rng: Any, ratio_min: float, ratio_max: float) -> tuple[int, int]:
    """A random span [start, end) covering ratio_min..ratio_max of ``words`` (at least one word)."""
    n = len(words)
    length = max(1, round(n * rng.uniform(ratio_min, ratio_max)))
    start = int(rng.integers(0, n - length + 1))
    return start, start + length


def crop_pairs(docs: Sequence[Doc], *, ratio_min: float = 0.1, ratio_max: float = 0.5, min_words: int = 8,
               seed: int = 42, epoch: int = 0) -> list[Pair]:
    """Two independent crops of each document of at least ``min_words`` words."""
    if not 0 < ratio_min <= ratio_max <= 1:
        raise ValueError(f"need 0 < ratio_min <= ratio_max <= 1, got {ratio_min}, {ratio_max}")
    rng = rng_for(seed, epoch, "cropping")
    pairs = []
    for doc in docs:
        words = doc.full.split()
        if len(words) < min_words:
            continue
        a, b = crop(words, rng, ratio_min, ratio_max), crop(words, rng, ratio_min, ratio_max)
        pairs.append(Pair(" ".join(words[a[0] : a[1]]), " ".join(words[b[0] : b[1]]), doc.id))
    return pairs


def key_queue(encoder: Any, size: int, dim: int) -> Any:
    """A MoCo key encoder (a frozen copy updated by momentum) with a queue of ``size`` keys."""
    import torch

    class KeyQueue(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = copy.deepcopy(encoder)
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            self.register_buffer("keys", torch.zeros(size, dim))
            self.register_buffer("filled", torch.zeros((), dtype=torch.long))
            self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

        def negatives(self) -> Any:
            return self.keys[: int(self.filled)]

        def push(self, keys: Any) -> None:
            keys = keys.detach().float()[:size]
            start = int(self.pointer)
            rows = (torch.arange(len(keys)) + start) % size
            self.keys[rows] = keys
            self.pointer.fill_((start + len(keys)) % size)
            self.filled.fill_(min(size, int(self.filled) + len(keys)))

        @torch.no_grad()
        def update(self, online: Any, momentum: float) -> None:
            for k, q in zip(self.encoder.parameters(), online.parameters(), strict=True):
                k.mul_(momentum).add_(q.detach(), alpha=1 - momentum)

    return KeyQueue()
