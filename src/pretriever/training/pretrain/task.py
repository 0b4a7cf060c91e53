"""What a pre-training task is to the trainer: options, examples, a loss.

A task is one module (``ict.py``, ``lexical.py``, ...) holding a frozen ``Options`` dataclass (its
settings, defaults the measured best) and a ``Task`` subclass registered by name in
``registry.TASKS``. The trainer knows tasks only through that table, and a task imports only what
lies below the trainer (text helpers, objectives, encoders, indexes), never the loop that runs it:

    examples(epoch) -> list          pure in (seed, epoch): the resume contract of the loop
    order(examples, rng) -> indices  batch order (default: a seeded shuffle)
    loss(student, batch, generator)  a scalar tensor (detached when GradCache back-propagated it)
    heads(student) -> {name: make}   modules trained beside the encoder (MLM head, decoder, queue)
    after_step(student)              after each optimizer step (momentum encoders)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pretriever.training.pretrain._text import Doc


@dataclass(frozen=True)
class NoOptions:
    """The options of a task that has none."""


@dataclass
class Context:
    """What every task may read when it starts: the corpus (as ``docs`` and as the ``Corpus``),
    the model the student starts from, and the run's shared settings."""

    docs: list[Doc]
    corpus: Any
    base: str
    seed: int
    batch_size: int
    max_length: int
    query_max_length: int
    max_examples: int | None
    temperature: float
    work_dir: Path
    progress: bool


@dataclass
class Student:
    """The model being pre-trained, as a task's loss sees it.

    ``heads`` is the ``ModuleDict`` of the tasks' heads (trained and checkpointed with the
    encoder); ``grad_cache`` is the chunk GradCache embeds at a time (0: the whole batch at once).
    """

    st: Any
    heads: Any
    prompts: dict[str, str]
    normalize: bool
    device: str
    max_length: int
    query_max_length: int
    temperature: float
    grad_cache: int

    def embedder(self, max_length: int) -> Callable[[list[str]], Any]:
        """texts -> embeddings with gradients (length-sorted forward passes)."""
        from pretriever.training.embedding import embed

        return lambda texts: embed(self.st, texts, max_length, normalize=self.normalize)

    def embedded_loss(self, groups: Sequence[tuple[Callable[[list[str]], Any], list[str]]],
                      loss_of: Callable[[list[Any]], Any]) -> Any:
        """``loss_of([embeddings of each group])``, through GradCache when ``grad_cache`` is set."""
        from pretriever.training.grad_cache import embedded_loss

        return embedded_loss(groups, loss_of, self.grad_cache, self.device)

    def contrastive(self, queries: list[str], documents: list[str], *, query_length: int | None = None,
                    prompted: bool = False) -> Any:
        """InfoNCE of each query against its own document and the batch's others (in-batch
        negatives), with the model's prompts prepended unless ``prompted``."""
        from pretriever.training.objectives.infonce import infonce

        if not prompted:
            queries = [self.prompts["query"] + q for q in queries]
            documents = [self.prompts["document"] + d for d in documents]
        groups = [(self.embedder(query_length or self.query_max_length), queries),
                  (self.embedder(self.max_length), documents)]
        return self.embedded_loss(groups, lambda reps: infonce(*reps, self.temperature, group=1))

    def tokens(self, texts: list[str]) -> tuple[dict[str, Any], Any]:
        """Tokenised ``texts`` on the device, and where tokens may be masked (not special, not pad)."""
        features = self.st.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt", return_special_tokens_mask=True)
        special = features.pop("special_tokens_mask").bool()
        features = {k: v.to(self.device) for k, v in features.items()}
        return features, (~special.to(self.device)) & features["attention_mask"].bool()

    def vectors(self, output: dict[str, Any]) -> Any:
        """The sentence embedding of a forward pass, normalised as the model's similarity wants."""
        import torch

        v = output["sentence_embedding"]
        return torch.nn.functional.normalize(v, dim=-1) if self.normalize else v

    @property
    def mask_id(self) -> int | None:
        return self.st.tokenizer.mask_token_id


class Task:
    """A pre-training task; subclasses set the class attributes and implement ``examples`` and
    ``loss``. ``needs`` says what a document must have to yield an example (the error when a corpus
    yields fewer than two); ``splits_batches`` says whether GradCache can split its batches (tasks
    that embed whole texts can, tasks that score tokens cannot); ``texts_per_example`` (queries,
    documents) sizes a step for the memory estimate."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    needs: ClassVar[str] = ""
    splits_batches: ClassVar[bool] = True
    texts_per_example: ClassVar[tuple[int, int]] = (1, 1)
    excludes: ClassVar[tuple[str, ...]] = ()  # tasks this one already includes

    def __init__(self, options: Any, context: Context) -> None:
        self.options = options
        self.context = context

    def examples(self, epoch: int) -> list[Any]:
        raise NotImplementedError

    def order(self, examples: list[Any], rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(examples))

    def check(self, examples: int) -> None:
        """Refuse settings that cannot work with this many examples per epoch."""

    def heads(self, student: Student) -> dict[str, Callable[[], Any]]:
        return {}

    def loss(self, student: Student, batch: list[Any], generator: Any) -> Any:
        raise NotImplementedError

    def after_step(self, student: Student) -> None:
        """Runs after every optimizer step."""

    def tokens_per_step(self, batch_size: int, max_length: int, query_max_length: int) -> int:
        """Tokens one step embeds with gradients (the memory estimate's unit)."""
        queries, documents = self.texts_per_example
        return batch_size * (queries * query_max_length + documents * max_length)
