"""Text helpers the pre-training tasks share: sentences, words and a seeded RNG per item."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# a sentence ends at . ! ? followed by white space and an upper-case letter, digit, quote or bracket
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@dataclass(frozen=True)
class Pair:
    """A pseudo-query and its positive, from document ``doc_id``."""

    query: str
    positive: str
    doc_id: str
    kept: bool = False  # ICT: the query sentence was left in the positive


@dataclass(frozen=True)
class Doc:
    """One corpus document as the tasks see it."""

    id: str
    title: str
    text: str

    @property
    def full(self) -> str:
        return f"{self.title}. {self.text}" if self.title else self.text


def sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation; fragments under three words ("Dr.", "Yes.") are joined
    to the next sentence, or to the previous one at the end."""
    merged: list[str] = []
    pending = ""
    for part in (p.strip() for p in _SENTENCE_END.split(text.strip())):
        if not part:
            continue
        part = f"{pending} {part}" if pending else part
        if len(part.split()) < 3:
            pending = part
            continue
        merged.append(part)
        pending = ""
    if pending:
        if merged:
            merged[-1] = f"{merged[-1]} {pending}"
        else:
            merged.append(pending)
    return merged


def sentence_groups(parts: Sequence[str], passage_words: int) -> list[list[str]]:
    """Consecutive sentences grouped into passages of at most ``passage_words`` words (a longer
    sentence is a passage on its own)."""
    out: list[list[str]] = []
    current: list[str] = []
    words = 0
    for sentence in parts:
        n = len(sentence.split())
        if current and words + n > passage_words:
            out.append(current)
            current, words = [], 0
        current.append(sentence)
        words += n
    if current:
        out.append(current)
    return out


def passages(parts: Sequence[str], passage_words: int) -> list[str]:
    """The passages of ``sentence_groups`` as text."""
    return [" ".join(group) for group in sentence_groups(parts, passage_words)]


def rng_for(seed: int, epoch: int, task: str) -> np.random.Generator:
    """Each (seed, epoch, task) gets its own stream: an epoch's examples are a pure function of it
    (the resume contract of the training loop)."""
    return np.random.default_rng([seed, epoch, sum(ord(c) * 31**i for i, c in enumerate(task)) % 2**31])
