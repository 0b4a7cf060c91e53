"""Masked-language-model pieces shared by PROP and RetroMAE: token masking and a vocabulary head.

sentence-transformers checkpoints ship the bare transformer without its MLM head, so the head is
built here with its output projection tied to the input word embeddings (as in BERT). Its
transform starts as the identity (then LayerNorm), so that before any training the logits are
the similarity of a hidden state to each word's embedding rather than random noise.
"""

from __future__ import annotations

from typing import Any


def mask_tokens(input_ids: Any, maskable: Any, rate: float, mask_id: int, generator: Any) -> tuple[Any, Any]:
    """Replace a ``rate`` share of the ``maskable`` positions with ``mask_id``.

    Returns (masked ids, labels): labels hold the original id where masked and -100 elsewhere
    (ignored by cross-entropy). At least one position per row is masked when any is maskable.
    """
    import torch

    noise = torch.rand(input_ids.shape, generator=generator, device="cpu").to(input_ids.device)
    chosen = (noise < rate) & maskable
    # rows that drew nothing mask their likeliest maskable position, so every row has a target
    empty = ~chosen.any(dim=1) & maskable.any(dim=1)
    if empty.any():
        pick = torch.where(maskable, noise, torch.full_like(noise, 2.0)).argmin(dim=1)
        chosen[empty, pick[empty]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    return torch.where(chosen, torch.full_like(input_ids, mask_id), input_ids), labels


def mlm_head(word_embeddings: Any) -> Any:
    """A head mapping hidden states to vocabulary logits, tied to ``word_embeddings``."""
    import torch

    class MlmHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            vocab, dim = word_embeddings.weight.shape
            self.transform = torch.nn.Linear(dim, dim)
            with torch.no_grad():
                self.transform.weight.copy_(torch.eye(dim))
                self.transform.bias.zero_()
            self.norm = torch.nn.LayerNorm(dim)
            self.bias = torch.nn.Parameter(torch.zeros(vocab))
            self.words = word_embeddings

        def forward(self, hidden: Any) -> Any:
            return self.norm(self.transform(hidden)) @ self.words.weight.T + self.bias

    return MlmHead()


def mlm_loss(head: Any, hidden: Any, labels: Any) -> Any:
    """Cross-entropy of the masked positions only (the vocabulary projection of every position
    would cost B x L x V)."""
    import torch.nn.functional as F

    where = labels != -100
    if not where.any():
        return hidden.sum() * 0.0
    return F.cross_entropy(head(hidden[where]).float(), labels[where])


def require_mask(student: Any, task: str) -> None:
    """Refuse a masked-language task on a model whose tokenizer has no [MASK] token."""
    from pretriever.errors import ConfigError

    if student.mask_id is None:
        raise ConfigError(f"{task} masks tokens, and this model's tokenizer has no [MASK] token: choose "
                          f"a task that does not mask (ict, bfs, cropping, lexical)")
