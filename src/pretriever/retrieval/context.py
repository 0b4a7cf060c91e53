"""RAG context assembly: a query's retrieved passages packed into one text a language model reads.

Three steps, each from the retrieval-augmented generation literature:
- near-duplicates are dropped (two passages whose word 3-gram sets overlap by ``max_overlap`` or
  more, Jaccard; the better-ranked one is kept), so the budget is not spent twice on one text;
- passages are packed in rank order under a token budget counted with a named tokenizer (whole
  passages; the best one is cut to the budget if it alone is longer);
- the packed passages are ordered so that the strongest sit at the start and the end of the context
  and the weakest in the middle, where models read worst (Liu et al. 2024, "Lost in the middle: how
  language models use long contexts", TACL): ranks 1, 3, 5, ... from the start, ..., 6, 4, 2 at the end.

The result is the text and one citation per passage (document id, rank, score and the character
span of the passage in the text), plain data that an HTTP or MCP layer returns as is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pretriever.errors import ConfigError

SEPARATOR = "\n\n"
ORDERS = ("edges", "rank")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Citation:
    """Where one passage sits in the context text (``text[start:end]``)."""

    doc_id: str
    rank: int
    score: float
    start: int
    end: int


@dataclass
class Context:
    """The packed text, its citations in text order, its token count, and what was left out."""

    text: str
    citations: list[Citation]
    tokens: int
    dropped_duplicates: list[str] = field(default_factory=list)
    over_budget: list[str] = field(default_factory=list)


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """The set of lowercased word n-grams of ``text`` (its words themselves when shorter)."""
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def edges_order(n: int) -> list[int]:
    """Positions 0..n-1 (best first) placed best at both ends: 0, 2, 4, ..., 5, 3, 1."""
    return list(range(0, n, 2)) + list(range(1, n, 2))[::-1]


def token_counter(tokenizer: Any = "minilm") -> Callable[[str], int]:
    """Count tokens as ``tokenizer`` does: a model folder or hub id ("minilm" = the bundled one), or
    an object with ``encode``."""
    if not isinstance(tokenizer, (str, bytes)) and hasattr(tokenizer, "encode"):
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
    from transformers import AutoTokenizer

    from pretriever.encoders.backends import resolve_model

    loaded = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    loaded.model_max_length = 1 << 30  # counting, not encoding: no warning past the model's length
    return lambda text: len(loaded.encode(text, add_special_tokens=False))


def assemble(
    hits: Mapping[str, float],
    texts: Mapping[str, str],
    *,
    budget: int = 1024,
    count: Callable[[str], int] | None = None,
    max_overlap: float = 0.8,
    order: str = "edges",
    cite: bool = True,
) -> Context:
    """Pack the passages of ``hits`` ({doc id: score}) into a context of at most ``budget`` tokens.

    ``texts`` maps each doc id to its passage; ``count`` counts tokens (default: the bundled
    MiniLM tokenizer); ``cite`` prefixes each passage with ``[doc id]``, counted in the budget.
    """
    if budget < 1:
        raise ConfigError(f"the token budget must be at least 1, got {budget}")
    if not 0.0 < max_overlap <= 1.0:
        raise ConfigError(f"max_overlap must be in (0, 1], got {max_overlap}")
    if order not in ORDERS:
        raise ConfigError(f"unknown order '{order}'; choose one of {', '.join(ORDERS)}")
    missing = [d for d in hits if d not in texts]
    if missing:
        raise ConfigError(f"no text for {len(missing)} retrieved document(s), e.g. {missing[0]}: pass the "
                          "corpus the run was retrieved from")
    count = count or token_counter()
    ranked = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
    kept: list[tuple[int, str, float, str]] = []  # (rank, doc id, score, passage)
    seen: list[set] = []
    dropped: list[str] = []
    over: list[str] = []
    used = 0
    for rank, (doc_id, score) in enumerate(ranked, start=1):
        grams = shingles(texts[doc_id])
        if any(jaccard(grams, other) >= max_overlap for other in seen):
            dropped.append(doc_id)
            continue
        passage = (f"[{doc_id}] " if cite else "") + texts[doc_id].strip()
        cost = count(passage) + (count(SEPARATOR) if kept else 0)
        if used + cost > budget:
            if kept:
                over.append(doc_id)
                continue
            passage = _cut(passage, budget, count)
            cost = count(passage)
        kept.append((rank, doc_id, float(score), passage))
        seen.append(grams)
        used += cost
    text, citations = _layout(kept, order)
    while count(text) > budget and len(kept) > 1:  # a tokenizer that merges across passages
        over.insert(0, kept.pop()[1])
        text, citations = _layout(kept, order)
    return Context(text, citations, count(text) if text else 0, dropped, over)


def _layout(kept: list[tuple[int, str, float, str]], order: str) -> tuple[str, list[Citation]]:
    """The passages in context order, joined, with their character spans."""
    placed = [kept[i] for i in (edges_order(len(kept)) if order == "edges" else range(len(kept)))]
    parts: list[str] = []
    citations: list[Citation] = []
    offset = 0
    for rank, doc_id, score, passage in placed:
        if parts:
            offset += len(SEPARATOR)
        citations.append(Citation(doc_id, rank, score, offset, offset + len(passage)))
        parts.append(passage)
        offset += len(passage)
    return SEPARATOR.join(parts), citations


def _cut(passage: str, budget: int, count: Callable[[str], int]) -> str:
    """The longest word-boundary prefix of ``passage`` within ``budget`` tokens."""
    words = passage.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:  # the largest number of words whose prefix fits
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
