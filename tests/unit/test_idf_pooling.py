"""IDF pooling: the weights, the folder it saves, every inference path, and index compatibility."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from pretriever.encoders.dense import DenseEncoder, check_compatible
from pretriever.encoders.idf_pooling import add_idf_pooling, idf_weights, token_weights
from pretriever.errors import ConfigError

CORPUS = [
    "The betel nut is chewed in parts of Asia.",
    "The cat sat on the mat.",
    "The dog ran in the park.",
    "The weather was cold and the sky was grey.",
]


def test_weights_favour_rare_tokens_and_keep_a_typical_token_at_one(minilm) -> None:
    tokenizer = minilm.st.tokenizer
    weights = idf_weights(tokenizer, CORPUS)
    (the,), (cat,) = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("the", "cat"))
    assert weights.shape == (len(tokenizer),) and weights.dtype == np.float32
    assert weights[cat] > 1 > weights[the]  # "the" is in every document, "cat" in one
    ids = {i for text in CORPUS for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    seen = np.zeros(len(tokenizer), dtype=bool)
    seen[list(ids)] = True
    assert weights[seen].mean() == pytest.approx(1.0, abs=1e-5)
    unseen = ~seen
    unseen[tokenizer.all_special_ids] = False
    assert weights[unseen].min() == pytest.approx(weights[seen].max())  # unseen counts as the rarest
    assert all(weights[i] == 1.0 for i in tokenizer.all_special_ids)
    squared = idf_weights(tokenizer, CORPUS, power=2.0)  # the power spreads the weights, order kept
    np.testing.assert_allclose(squared, weights**2, rtol=1e-5)
    with pytest.raises(ConfigError, match="a corpus with text in it"):
        idf_weights(tokenizer, [])
    with pytest.raises(ConfigError, match="power must be positive"):
        idf_weights(tokenizer, CORPUS, power=0)


@pytest.mark.slow
def test_idf_pooled_folder_loads_in_sentence_transformers_and_openvino(minilm, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = DenseEncoder("minilm", backend="torch", precision="float32")
    encoder.__dict__["st"] = copy.deepcopy(minilm.st)
    add_idf_pooling(encoder.st, CORPUS)
    add_idf_pooling(encoder.st, CORPUS)  # a second call replaces the weighting, never stacks two
    assert [type(m).__name__ for m in encoder.st] == ["Transformer", "WordWeights", "Pooling", "Normalize"]
    folder = encoder.save(tmp_path / "idf", overwrite=True)
    texts = ["betel nut chewing", "the cat sat on the mat"]

    torch_path = DenseEncoder(folder, backend="torch", precision="float32")
    weighting = torch_path.st[1].emb_layer.weight
    assert not weighting.requires_grad  # trained values would be lost: WordWeights reloads its config
    vectors = torch_path.encode_documents(texts)
    plain = SentenceTransformer(str(folder)).encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, plain, atol=1e-6)
    np.testing.assert_allclose(token_weights(torch_path.st), idf_weights(minilm.st.tokenizer, CORPUS))
    assert not np.allclose(vectors, minilm.encode_documents(texts), atol=1e-3)  # the weighting is used
    pytest.importorskip("openvino")
    openvino = DenseEncoder(folder, backend="openvino", precision="float32").encode_documents(texts)
    np.testing.assert_allclose(openvino, vectors, atol=1e-4)

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["params"]["token_weights_sha256"] == torch_path.spec()["token_weights_sha256"]
    with pytest.raises(ConfigError, match="token_weights_sha256"):  # a plain index, IDF-pooled queries
        check_compatible(minilm.spec(), torch_path.spec())


def test_idf_pooling_needs_mean_pooling(minilm) -> None:
    st = copy.deepcopy(minilm.st)
    next(m for m in st if type(m).__name__ == "Pooling").pooling_mode = "cls"
    with pytest.raises(ConfigError, match="weighs mean pooling; this model pools with cls"):
        add_idf_pooling(st, CORPUS)
