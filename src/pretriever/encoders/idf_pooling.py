"""IDF-weighted mean pooling: a text's vector weighs each token by how rare it is in the corpus.

Mean pooling gives "the" and "betel" the same say in a document's vector, so a rare term, the
one a short query turns on, is diluted by a hundred common ones. Weighting token vectors by
inverse document frequency is the old remedy of sentence embeddings (SIF, Arora et al. 2017,
"A Simple but Tough-to-Beat Baseline for Sentence Embeddings"); here the frequencies are counted
on the user's own corpus (no labels), per WordPiece token, and the weight is BM25's IDF divided by
its mean over the corpus' tokens (a typical token keeps weight 1), raised to a power that sets how
far rare terms stand out; special tokens keep 1, tokens the corpus never uses take the largest
weight. The weighting is sentence-transformers' own ``WordWeights`` module, placed before the
model's mean ``Pooling``: the folder loads in plain ``SentenceTransformer(path)``. The weights
stay frozen (statistics of the corpus, not parameters); they must, since ``WordWeights`` saves them
in its config and rebuilds them from it on load, so a trained value would be lost on reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pretriever.errors import ConfigError


def idf_weights(tokenizer: Any, texts: Sequence[str], *, power: float = 1.0, chunk: int = 4096) -> np.ndarray:
    """One weight per vocabulary id: BM25 IDF over ``texts`` divided by its mean over the tokens
    that occur, to the ``power``; 1 for special tokens; the largest weight for tokens that never
    occur."""
    if not power > 0:
        raise ConfigError(f"the IDF pooling power must be positive, got {power}")
    size = len(tokenizer)
    df = np.zeros(size, dtype=np.int64)
    for start in range(0, len(texts), chunk):
        ids = tokenizer(list(texts[start : start + chunk]), add_special_tokens=False)["input_ids"]
        for seq in ids:
            df[np.unique(np.asarray(seq, dtype=np.int64))] += 1
    n = len(texts)
    present = df > 0
    if not present.any():
        raise ConfigError("IDF pooling needs a corpus with text in it; this one has none")
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0)
    weights = (idf / idf[present].mean()) ** power
    weights[~present] = weights[present].max()
    weights[[i for i in tokenizer.all_special_ids if i < size]] = 1.0
    return weights.astype(np.float32)


def add_idf_pooling(st: Any, texts: Sequence[str], *, power: float = 1.0) -> Any:
    """Weigh ``st``'s mean pooling by the IDF of ``texts`` to the ``power`` (in place; a weighting
    already there is replaced); returns ``st``."""
    from collections import OrderedDict

    from sentence_transformers.sentence_transformer.modules import Pooling, WordWeights

    modules = [m for m in st._modules.values() if not isinstance(m, WordWeights)]
    at = next((i for i, m in enumerate(modules) if isinstance(m, Pooling)), None)
    mode = modules[at].pooling_mode if at is not None else "no Pooling module"
    if mode != "mean":
        raise ConfigError(f"IDF pooling weighs mean pooling; this model pools with {mode}")
    tokenizer = st.tokenizer
    weights = idf_weights(tokenizer, texts, power=power)
    vocab = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    if len(vocab) != len(weights):
        raise ConfigError(f"the tokenizer's vocabulary has gaps ({len(vocab)} tokens, ids up to "
                          f"{len(weights) - 1}); IDF pooling needs contiguous ids")
    module = WordWeights(vocab, dict(zip(vocab, weights.tolist(), strict=True)), unknown_word_weight=1.0)
    module.to(st.device)
    modules.insert(at, module)
    st._modules = OrderedDict((str(i), m) for i, m in enumerate(modules))
    freeze_token_weights(st)
    return st


def save_idf_pooled(model: str | Path, texts: Sequence[str], out: str | Path, *, power: float = 1.0,
                    device: str | None = None) -> Path:
    """Save ``model`` with its mean pooling weighted by the IDF of ``texts`` to ``out`` (replaced if
    it exists): the starting point of ``pretrain --idf-pooling``."""
    from pretriever.encoders.dense import DenseEncoder

    encoder = DenseEncoder(model, backend="torch", precision="float32", device=device)
    add_idf_pooling(encoder.st, texts, power=power)
    return encoder.save(out, overwrite=True)


def freeze_token_weights(st: Any) -> None:
    """Keep every trainer off ``st``'s token weights (see the module docstring)."""
    module = _word_weights(st)
    if module is not None:
        module.emb_layer.weight.requires_grad_(False)


def token_weights(st: Any) -> np.ndarray | None:
    """The IDF pooling weights of ``st`` (one per vocabulary id), or None when it pools plainly."""
    module = _word_weights(st)
    return None if module is None else module.emb_layer.weight.detach().float().cpu().numpy()[:, 0]


def _word_weights(st: Any) -> Any:
    from sentence_transformers.sentence_transformer.modules import WordWeights

    return next((m for m in st if isinstance(m, WordWeights)), None)
