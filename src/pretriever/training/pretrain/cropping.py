"""Contrastive cropping (Izacard et al. 2022, "Unsupervised Dense Information Retrieval with
Contrastive Learning", Contriever).

Two independent random spans of one document, each ``ratio_min``..``ratio_max`` of its words,
are a positive pair; other documents' crops in the batch are negatives. Independent (possibly
overlapping) crops teach the model that a document's parts share a topic. Optionally, as MoCo
(He et al. 2020), a momentum copy of the encoder embeds the keys and a queue of earlier keys
adds negatives beyond the batch (``KeyQueue``, ``queue`` > 0). Contriever also deletes 10% of the
words of each crop; that augmentation is left out here, since it mostly matters when training from
scratch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.pretrain._text import Doc, Pair, rng_for
from pretriever.training.pretrain.task import Student, Task


@dataclass(frozen=True)
class Options:
    ratio_min: float = 0.1
    ratio_max: float = 0.5
    queue: int = 0  # MoCo queue of this many keys (0: in-batch negatives only)
    momentum: float = 0.999

    def __post_init__(self) -> None:
        if not 0 < self.ratio_min <= self.ratio_max <= 1:
            raise ConfigError(f"need 0 < cropping.ratio_min <= cropping.ratio_max <= 1, got "
                              f"{self.ratio_min} and {self.ratio_max}")
        if self.queue < 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"cropping.queue must be >= 0 and cropping.momentum in [0, 1), got "
                              f"{self.queue} and {self.momentum}")


def crop(words: Sequence[str], rng: Any, ratio_min: float, ratio_max: float) -> tuple[int, int]:
    """A random span [start, end) covering ratio_min..ratio_max of ``words`` (at least one word)."""
    n = len(words)
    length = max(1, round(n * rng.uniform(ratio_min, ratio_max)))
    start = int(rng.integers(0, n - length + 1))
    return start, start + length


def crop_pairs(docs: Sequence[Doc], *, ratio_min: float = 0.1, ratio_max: float = 0.5, min_words: int = 8,
               seed: int = 42, epoch: int = 0) -> list[Pair]:
    """Two independent crops of each document of at least ``min_words`` words."""
    Options(ratio_min, ratio_max)  # validates
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


class Cropping(Task):
    name = "cropping"
    Options = Options
    needs = "cropping needs documents of at least 8 words"
    texts_per_example = (0, 2)  # both crops are document text, at the document length

    def examples(self, epoch: int) -> list[Pair]:
        return crop_pairs(self.context.docs, ratio_min=self.options.ratio_min,
                          ratio_max=self.options.ratio_max, seed=self.context.seed, epoch=epoch)

    def check(self, examples: int) -> None:
        if self.options.queue >= examples:
            # the queue would hold a query's own document from an earlier epoch as a negative
            raise ConfigError(f"cropping.queue ({self.options.queue}) must be smaller than the "
                              f"{examples} cropping examples per epoch")

    def heads(self, student: Student) -> dict[str, Callable[[], Any]]:
        if not self.options.queue:
            return {}
        return {"queue": lambda: key_queue(student.st, self.options.queue,
                                           int(student.st.get_embedding_dimension()))}

    def loss(self, student: Student, batch: list[Pair], generator: Any) -> Any:
        prompt = student.prompts["document"]
        queries = [prompt + p.query for p in batch]
        documents = [prompt + p.positive for p in batch]
        if not self.options.queue:
            return student.contrastive(queries, documents, query_length=student.max_length, prompted=True)
        import torch

        from pretriever.training.embedding import embed
        from pretriever.training.objectives.infonce import infonce

        queue = student.heads["queue"]
        with torch.no_grad():
            keys = embed(queue.encoder, documents, student.max_length, normalize=student.normalize)
        negatives = torch.cat([keys, queue.negatives().to(keys.dtype)])
        loss = student.embedded_loss([(student.embedder(student.max_length), queries)],
                                     lambda reps: infonce(reps[0], negatives, student.temperature, group=1))
        queue.push(keys)
        return loss

    def after_step(self, student: Student) -> None:
        if self.options.queue:
            student.heads["queue"].update(student.st, self.options.momentum)
