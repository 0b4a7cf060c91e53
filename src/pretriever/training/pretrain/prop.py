"""Representative words prediction, ROP (Ma et al. 2021, "PROP: Pre-training with Representative
Words Prediction for Ad-hoc Retrieval").

Two word sets of the same length (drawn from a Poisson) are sampled from a document's
Dirichlet-smoothed unigram language model; the set with the higher query likelihood under that
model is the more "representative" one, and the model learns to score it above the other
jointly with masked-language modelling on the document. Two departures from the paper, both so
that pre-training shapes the embeddings retrieval uses: PROP scores (set, document) with a
cross-encoder, here the bi-encoder's scaled cosine scores them; and PROP's pairwise hinge
max(0, 1 - s+ + s-) becomes its smooth form, the logistic loss log(1 + exp(s- - s+)), which
keeps a gradient on pairs already ordered by a margin (cosines scaled by 1/temperature).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pretriever.errors import ConfigError
from pretriever.training.pretrain._text import Doc, rng_for
from pretriever.training.pretrain.mlm import mask_tokens, mlm_head, mlm_loss, require_mask
from pretriever.training.pretrain.task import Student, Task

_WORD = re.compile(r"[a-z][a-z0-9\-]+")
_STOPWORD_TEXT = (
    "a about above after again against all also am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further had "
    "has have having he her here hers him his how i if in into is it its itself just me more most my "
    "no nor not now of off on once only or other our out over own same she should so some such than "
    "that the their them then there these they this those through to too under until up very was we "
    "were what when where which while who whom why will with would you your"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Options:
    mu: float = 100.0  # Dirichlet smoothing of the document language model
    mean_length: float = 3.0  # mean size of a word set (Poisson)
    mlm_weight: float = 1.0
    mask_rate: float = 0.15

    def __post_init__(self) -> None:
        if not self.mu > 0 or not self.mean_length > 0:
            raise ConfigError(f"prop.mu and prop.mean_length must be positive, got {self.mu} and "
                              f"{self.mean_length}")
        if not 0 <= self.mask_rate <= 1:
            raise ConfigError(f"prop.mask_rate must be in [0, 1], got {self.mask_rate}")


def words(text: str) -> list[str]:
    """Lower-cased content words (stop words and one-letter tokens dropped)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


@dataclass(frozen=True)
class RopExample:
    """A document and two sampled word sets; ``preferred`` has the higher log-likelihood."""

    doc_id: str
    document: str
    preferred: tuple[str, ...]
    other: tuple[str, ...]
    preferred_loglik: float
    other_loglik: float


class CollectionLM:
    """Collection word frequencies, for Dirichlet smoothing: p(w|d) = (tf + mu p(w|C)) / (|d| + mu)."""

    def __init__(self, docs: Sequence[Doc], mu: float = 100.0) -> None:
        if mu <= 0:
            raise ValueError(f"mu must be positive, got {mu}")
        self.mu = mu
        counts: Counter[str] = Counter()
        for doc in docs:
            counts.update(words(doc.full))
        self.vocab = sorted(counts)
        total = sum(counts.values()) or 1
        self.p = np.array([counts[w] / total for w in self.vocab], dtype=np.float64)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    def document_lm(self, tokens: Sequence[str]) -> np.ndarray:
        """The smoothed distribution of a document over the collection vocabulary."""
        tf = np.zeros(len(self.vocab))
        for w in tokens:
            tf[self.index[w]] += 1
        return (tf + self.mu * self.p) / (len(tokens) + self.mu)

    @staticmethod
    def loglik(lm: np.ndarray, ids: Sequence[int]) -> float:
        return float(sum(math.log(lm[i]) for i in ids))


def rop_examples(docs: Sequence[Doc], *, mu: float = 100.0, mean_length: float = 3.0, seed: int = 42,
                 epoch: int = 0, lm: CollectionLM | None = None) -> list[RopExample]:
    """One example per document with at least 5 content words (skipped when five draws all tie)."""
    lm = lm or CollectionLM(docs, mu)
    rng = rng_for(seed, epoch, "prop")
    out = []
    for doc in docs:
        tokens = words(doc.full)
        if len(tokens) < 5:
            continue
        dist = lm.document_lm(tokens)
        for _ in range(5):  # sets of equally likely words tie: draw again
            size = max(1, int(rng.poisson(mean_length)))
            a = rng.choice(len(dist), size=size, replace=False, p=dist)
            b = rng.choice(len(dist), size=size, replace=False, p=dist)
            la, lb = lm.loglik(dist, a), lm.loglik(dist, b)
            if not math.isclose(la, lb, rel_tol=1e-12, abs_tol=1e-12):
                break
        else:
            continue
        if lb > la:
            a, b, la, lb = b, a, lb, la
        out.append(RopExample(doc.id, doc.full, tuple(lm.vocab[i] for i in a), tuple(lm.vocab[i] for i in b),
                              la, lb))
    return out


def rop_loss(preferred: Any, other: Any, documents: Any, temperature: float) -> Any:
    """Pairwise logistic loss: the preferred set's similarity to its document above the other's."""
    import torch.nn.functional as F

    s_pos = (preferred * documents).sum(-1).float() / temperature
    s_neg = (other * documents).sum(-1).float() / temperature
    return F.softplus(s_neg - s_pos).mean()


class PROP(Task):
    name = "prop"
    Options = Options
    needs = "PROP needs documents of at least 5 content words"
    splits_batches = False

    def __init__(self, options: Options, context: Any) -> None:
        super().__init__(options, context)
        self.lm = CollectionLM(context.docs, options.mu)

    def examples(self, epoch: int) -> list[RopExample]:
        return rop_examples(self.context.docs, mu=self.options.mu, mean_length=self.options.mean_length,
                            seed=self.context.seed, epoch=epoch, lm=self.lm)

    def heads(self, student: Student) -> dict[str, Callable[[], Any]]:
        require_mask(student, self.name)
        return {"mlm": lambda: mlm_head(student.st[0].auto_model.get_input_embeddings())}

    def loss(self, student: Student, batch: list[RopExample], generator: Any) -> Any:
        features, maskable = student.tokens([student.prompts["document"] + ex.document for ex in batch])
        masked, labels = mask_tokens(features["input_ids"], maskable, self.options.mask_rate,
                                     student.mask_id, generator)
        output = student.st({**features, "input_ids": masked})
        word_sets = [student.prompts["query"] + " ".join(s) for ex in batch for s in (ex.preferred, ex.other)]
        sets = student.embedder(student.query_max_length)(word_sets)
        rop = rop_loss(sets[0::2], sets[1::2], student.vectors(output), student.temperature)
        mlm = mlm_loss(student.heads["mlm"], output["token_embeddings"], labels)
        return rop + self.options.mlm_weight * mlm
