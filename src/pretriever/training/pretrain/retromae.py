"""Masked auto-encoding: RetroMAE (Xiao et al. 2022, "RetroMAE: Pre-Training Retrieval-oriented
Language Models Via Masked Auto-Encoder"), with DupMAE's bag-of-words head as a second task (Xiao et
al. 2023, "RetroMAE-2 / DupMAE: Duplex Masked Auto-Encoder").

The encoder sees the text with a moderate share masked (``encoder_rate``, 0.3) and produces the
sentence embedding (the model's own pooling, so the embedding retrieval uses is the one trained).
A one-layer decoder sees the same text masked aggressively (``decoder_rate``, 0.5) with the
sentence embedding in the first position, and must reconstruct the masked tokens: with most of
the context gone, the embedding has to carry the text's content. Loss = encoder MLM + decoder
reconstruction. DupMAE adds a second target: the max over positions of the encoder's token
vocabulary logits must predict the text's bag of words, so the token embeddings summarise it too.
This is RetroMAE's basic decoder (full self-attention), not its two-stream enhanced decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pretriever.errors import ConfigError
from pretriever.training.pretrain._text import Doc
from pretriever.training.pretrain.mlm import mask_tokens, mlm_head, mlm_loss, require_mask
from pretriever.training.pretrain.task import Student, Task


@dataclass(frozen=True)
class Options:
    encoder_rate: float = 0.3
    decoder_rate: float = 0.5

    def __post_init__(self) -> None:
        for name in ("encoder_rate", "decoder_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def decoder_heads(dim: int, heads: int) -> Any:
    """The decoder (one transformer layer) and the projection that places the sentence embedding
    into its first position."""
    import torch

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.project = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.LayerNorm(dim))
            self.layer = torch.nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1,
                                                          activation="gelu", batch_first=True)

        def forward(self, sentence: Any, inputs: Any, padding: Any) -> Any:
            inputs = torch.cat([self.project(sentence).unsqueeze(1), inputs[:, 1:]], dim=1)
            return self.layer(inputs, src_key_padding_mask=padding)

    return Decoder()


def bow_loss(head: Any, hidden: Any, input_ids: Any, content: Any) -> Any:
    """DupMAE: log-softmax of the max-pooled (ReLU) token logits must cover the input's words."""
    import torch

    logits = torch.relu(head(hidden).float())
    logits = logits.masked_fill(~content.unsqueeze(-1), 0.0).amax(dim=1)  # [B, V]
    logp = torch.log_softmax(logits, dim=-1)
    present = torch.zeros_like(logp).scatter_add_(1, input_ids, content.float()) > 0
    target = present.float() / present.sum(1, keepdim=True).clamp(min=1)
    return -(target * logp).sum(1).mean()


def retromae_loss(st: Any, head: Any, decoder: Any, features: dict[str, Any], maskable: Any, mask_id: int,
                  generator: Any, *, encoder_rate: float = 0.3, decoder_rate: float = 0.5,
                  bow: bool = False) -> tuple[Any, dict[str, float]]:
    """The RetroMAE (+ DupMAE) loss of one batch of tokenised texts, and its parts."""
    ids, attention = features["input_ids"], features["attention_mask"]
    enc_ids, enc_labels = mask_tokens(ids, maskable, encoder_rate, mask_id, generator)
    dec_ids, dec_labels = mask_tokens(ids, maskable, decoder_rate, mask_id, generator)
    out = st({**features, "input_ids": enc_ids})
    encoder_mlm = mlm_loss(head, out["token_embeddings"], enc_labels)
    # the decoder's input: the transformer's own embedding layer (words + positions)
    dec_inputs = st[0].auto_model.embeddings(input_ids=dec_ids)
    hidden = decoder(out["sentence_embedding"], dec_inputs, attention == 0)
    decoder_mlm = mlm_loss(head, hidden, dec_labels)
    total = encoder_mlm + decoder_mlm
    parts = {"encoder_mlm": float(encoder_mlm.detach()), "decoder_mlm": float(decoder_mlm.detach())}
    if bow:
        b = bow_loss(head, out["token_embeddings"], ids, maskable)
        total = total + b
        parts["bow"] = float(b.detach())
    return total, parts


class RetroMAE(Task):
    name = "retromae"
    Options = Options
    needs = "RetroMAE needs non-empty documents"
    splits_batches = False
    texts_per_example = (0, 2)  # the encoder's and the decoder's view of each document
    bag_of_words = False
    excludes: tuple[str, ...] = ()

    def examples(self, epoch: int) -> list[Doc]:
        return [doc for doc in self.context.docs if doc.full.strip()]  # the texts themselves

    def heads(self, student: Student) -> dict[str, Callable[[], Any]]:
        require_mask(student, self.name)
        shape = student.st[0].auto_model.config
        return {"mlm": lambda: mlm_head(student.st[0].auto_model.get_input_embeddings()),
                "decoder": lambda: decoder_heads(shape.hidden_size, shape.num_attention_heads)}

    def loss(self, student: Student, batch: list[Doc], generator: Any) -> Any:
        features, maskable = student.tokens([student.prompts["document"] + doc.full for doc in batch])
        heads = student.heads
        loss, _ = retromae_loss(student.st, heads["mlm"], heads["decoder"], features, maskable,
                                student.mask_id, generator, encoder_rate=self.options.encoder_rate,
                                decoder_rate=self.options.decoder_rate, bow=self.bag_of_words)
        return loss


class DupMAE(RetroMAE):
    name = "dupmae"
    needs = "DupMAE needs non-empty documents"
    bag_of_words = True
    excludes = ("retromae",)  # DupMAE is RetroMAE plus its bag-of-words head
