"""Body First Selection (Chang et al. 2020, "Pre-training Tasks for Embedding-based Large-scale
Retrieval"), adapted to corpora of short documents.

In the paper the query is a random sentence of a Wikipedia page's first section and the positive
a random passage of the same page. A BEIR document is usually one section (an abstract), so here
the query is its title, the closest stand-in for "what the page is about", or its first sentence
when it has no title; the positive is a random passage of the rest. The model learns to link a
topical summary to any part of the text it summarises. Passages are runs of whole sentences of at
most ``passage_words`` words (default 100, about 130 word pieces). In-batch negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.pretrain._text import Doc, Pair, passages, rng_for, sentences
from pretriever.training.pretrain.task import Student, Task


@dataclass(frozen=True)
class Options:
    passage_words: int = 100

    def __post_init__(self) -> None:
        if self.passage_words < 1:
            raise ConfigError(f"bfs.passage_words must be at least 1, got {self.passage_words}")


def bfs_pairs(docs: Sequence[Doc], *, passage_words: int = 100, seed: int = 42, epoch: int = 0) -> list[Pair]:
    """One (title or first sentence, random body passage) pair per document that has a body."""
    Options(passage_words)  # validates
    rng = rng_for(seed, epoch, "bfs")
    pairs = []
    for doc in docs:
        parts = sentences(doc.text)
        if doc.title.strip():
            query, body = doc.title.strip(), parts
        else:
            query, body = (parts[0], parts[1:]) if parts else ("", [])
        chunks = passages(body, passage_words)
        if not query or not chunks:
            continue
        pairs.append(Pair(query, chunks[int(rng.integers(len(chunks)))], doc.id))
    return pairs


class BFS(Task):
    name = "bfs"
    Options = Options
    needs = "BFS needs documents with a title and a body, or at least two sentences"

    def examples(self, epoch: int) -> list[Pair]:
        return bfs_pairs(self.context.docs, passage_words=self.options.passage_words, seed=self.context.seed,
                         epoch=epoch)

    def loss(self, student: Student, batch: list[Pair], generator: Any) -> Any:
        return student.contrastive([p.query for p in batch], [p.positive for p in batch])
