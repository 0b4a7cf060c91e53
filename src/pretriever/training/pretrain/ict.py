"""Inverse Cloze Task (Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering"; Chang et al. 2020, "Pre-training Tasks for Embedding-based Large-scale
Retrieval").

A random sentence of a document is the pseudo-query and the passage around it the positive. As
Lee et al. cut Wikipedia into blocks, a document is first cut into passages of whole sentences of
at most ``passage_words`` words, so the context is the one the sentence sits in, never a
truncated start of a long document that may not contain it. With
probability ``remove_rate`` (0.9 in both papers) the sentence is removed from the positive, so
the model must learn the context a sentence belongs to rather than lexical overlap; the
remaining 10% keep it, so exact matches are still rewarded. In-batch negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.pretrain._text import Doc, Pair, rng_for, sentence_groups, sentences
from pretriever.training.pretrain.task import Student, Task


@dataclass(frozen=True)
class Options:
    remove_rate: float = 0.9
    passage_words: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.remove_rate <= 1.0:
            raise ConfigError(f"ict.remove_rate must be in [0, 1], got {self.remove_rate}")
        if self.passage_words < 1:
            raise ConfigError(f"ict.passage_words must be at least 1, got {self.passage_words}")


def ict_pairs(docs: Sequence[Doc], *, remove_rate: float = 0.9, passage_words: int = 100, seed: int = 42,
              epoch: int = 0) -> list[Pair]:
    """One pair per document that has a passage of at least two sentences (a lone sentence has
    no context); the passage is drawn at random among those."""
    Options(remove_rate, passage_words)  # validates
    rng = rng_for(seed, epoch, "ict")
    pairs = []
    for doc in docs:
        blocks = [b for b in sentence_groups(sentences(doc.text), passage_words) if len(b) >= 2]
        if not blocks:
            continue
        parts = blocks[int(rng.integers(len(blocks)))]
        i = int(rng.integers(len(parts)))
        keep = bool(rng.random() >= remove_rate)
        context = parts if keep else parts[:i] + parts[i + 1 :]
        body = " ".join(context)
        pairs.append(Pair(parts[i], f"{doc.title}. {body}" if doc.title else body, doc.id, keep))
    return pairs


class ICT(Task):
    name = "ict"
    Options = Options
    needs = "ICT needs documents of at least two sentences within ict.passage_words words"

    def examples(self, epoch: int) -> list[Pair]:
        return ict_pairs(self.context.docs, remove_rate=self.options.remove_rate,
                         passage_words=self.options.passage_words, seed=self.context.seed, epoch=epoch)

    def loss(self, student: Student, batch: list[Pair], generator: Any) -> Any:
        return student.contrastive([p.query for p in batch], [p.positive for p in batch])
