"""Late interaction: the encoder (zero-shot and PyLate's layout), MaxSim, the exact and the PLAID
index, and reranking by MaxSim."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pretriever.data import load_dataset
from pretriever.data.corpus import Corpus
from pretriever.encoders.colbert import ColBERTEncoder, maxsim
from pretriever.indexes.late_interaction import MaxSimIndex, maxsim_matrix
from pretriever.indexes.plaid import PlaidIndex
from pretriever.retrieval import load_index


@pytest.fixture(scope="module")
def colbert() -> ColBERTEncoder:
    return ColBERTEncoder("minilm", batch_size=4, backend="torch", precision="float32")


def test_maxsim_equals_a_hand_computed_value() -> None:
    query = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    doc_a = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32)  # best per query token: 1.0 + 0.8
    doc_b = np.array([[0.0, -1.0]], dtype=np.float32)  # 0.0 + -1.0
    assert maxsim(query, doc_a) == pytest.approx(1.8)
    tokens = np.concatenate([doc_a, doc_b])
    scores = maxsim_matrix([query, query[:1]], tokens, np.array([0, 2, 3]))
    np.testing.assert_allclose(scores, [[1.8, -1.0], [1.0, 0.0]], atol=1e-6)


def test_zero_shot_drops_special_tokens_and_punctuation(colbert: ColBERTEncoder) -> None:
    assert not colbert.trained and colbert.dim == 384
    [doc] = colbert.encode_documents(["Bread, yeast."])
    words = colbert.tokenizer.tokenize("Bread, yeast.")
    assert doc.shape == (len([w for w in words if w not in ",."]), 384)
    np.testing.assert_allclose(np.linalg.norm(doc, axis=1), 1.0, atol=1e-5)


def _tiny_bert(folder: Path) -> Path:
    """A random four-layer BERT with MiniLM's vocabulary, saved as a Hugging Face folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pretriever.encoders.backends import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _pylate_folder(folder: Path) -> Path:
    """A folder in PyLate's layout, written by hand as PyLate 1.x writes it."""
    import torch
    from safetensors.torch import save_file

    _tiny_bert(folder)
    (folder / "1_Dense").mkdir()
    torch.manual_seed(1)
    save_file({"linear.weight": torch.randn(16, 32)}, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 32,
                "out_features": 16,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
                "use_residual": False,
            }
        )
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "similarity_fn_name": "MaxSim",
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 12,
                "document_length": 40,
                "attend_to_expansion_tokens": False,
                "skiplist_words": [".", ","],
                "do_query_expansion": True,
            }
        )
    )
    return folder


def _by_hand(folder: Path, text: str, marker: str, length: int | None) -> np.ndarray:
    """What PyLate computes: [CLS] marker tokens [SEP] (queries padded with [MASK]), transformer,
    projection, L2 normalisation."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok(text)["input_ids"]
    ids = [ids[0], tok.convert_tokens_to_ids(marker), *ids[1:]]
    mask = [1] * len(ids)
    if length is not None:
        mask += [0] * (length - len(ids))
        ids += [tok.mask_token_id] * (length - len(ids))
    model = AutoModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state[
            0
        ]
    weight = load_file(str(folder / "1_Dense" / "model.safetensors"))["linear.weight"]
    return torch.nn.functional.normalize(hidden @ weight.T, dim=-1).numpy()


def test_pylate_layout_round_trip(tmp_path: Path) -> None:
    folder = _pylate_folder(tmp_path / "pylate")
    enc = ColBERTEncoder(folder, backend="torch", precision="float32")
    assert enc.trained and enc.dim == 16
    assert enc.settings["query_length"] == 12 and enc.settings["do_query_expansion"]
    [query] = enc.encode_queries(["bread yeast"])
    np.testing.assert_allclose(query, _by_hand(folder, "bread yeast", "[unused0]", 12), atol=1e-5)
    [doc] = enc.encode_documents(["flour, water."])
    expected = _by_hand(folder, "flour, water.", "[unused1]", None)
    np.testing.assert_allclose(
        doc,
        expected[
            [
                i
                for i, t in enumerate(["[CLS]", "[unused1]", "flour", ",", "water", ".", "[SEP]"])
                if t not in ",."
            ]
        ],
        atol=1e-5,
    )
    enc.save(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config_sentence_transformers.json").read_text())
    original = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert {k: saved[k] for k in original} == original
    assert json.loads((tmp_path / "ours" / "modules.json").read_text()) == json.loads(
        (folder / "modules.json").read_text()
    )
    again = ColBERTEncoder(tmp_path / "ours", backend="torch", precision="float32")
    np.testing.assert_allclose(again.encode_queries(["bread yeast"])[0], query, atol=1e-6)


def test_a_trained_encoder_gets_a_projection_and_optional_markers(tmp_path: Path) -> None:
    bert = _tiny_bert(tmp_path / "bert")
    enc = ColBERTEncoder(bert, dim=8, backend="torch", precision="float32")
    enc.init_projection(["bread and yeast", "solar panels make electricity"] * 10)  # before any setting
    assert enc.trained and enc.dim == 8 and enc.settings["query_prefix"] == ""  # the measured default
    [query] = enc.encode_queries(["a short query."])
    assert query.shape == (len(enc.tokenizer.tokenize("a short query.")) + 2, 8)  # every real token
    enc.save(tmp_path / "model")
    assert ColBERTEncoder(tmp_path / "model").settings == enc.settings
    marked = ColBERTEncoder(bert, dim=8, query_prefix="[unused0]", document_prefix="[unused1]",
                            do_query_expansion=True, backend="torch", precision="float32")
    marked.init_projection(["bread and yeast", "solar panels make electricity"] * 10)
    [query] = marked.encode_queries(["a short query"])
    assert query.shape == (marked.settings["query_length"], 8)  # padded with [MASK]: query augmentation
    marked.save(tmp_path / "marked")
    saved = json.loads((tmp_path / "marked" / "config_sentence_transformers.json").read_text())
    assert saved["query_prefix"] == "[unused0]" and saved["do_query_expansion"] is True


def test_a_saved_zero_shot_encoder_encodes_the_same(colbert: ColBERTEncoder, tmp_path: Path) -> None:
    colbert.save(tmp_path / "zero-shot")
    again = ColBERTEncoder(tmp_path / "zero-shot", backend="torch", precision="float32")
    for texts in (["bread, without yeast?"], ["Flour, water and salt."]):
        np.testing.assert_allclose(again.encode_queries(texts)[0], colbert.encode_queries(texts)[0],
                                   atol=1e-5)
        np.testing.assert_allclose(again.encode_documents(texts)[0], colbert.encode_documents(texts)[0],
                                   atol=1e-5)


def _corpus(tiny: Path) -> Corpus:
    return load_dataset(tiny).corpus


def test_plaid_probing_every_centroid_equals_exact_maxsim(colbert: ColBERTEncoder, tiny: Path) -> None:
    ds = load_dataset(tiny)
    plaid = PlaidIndex(colbert, centroids=8, nprobe=8, ndocs=1000, progress=False).build(ds.corpus)
    tokens, offsets = plaid.decompressed()
    exact = MaxSimIndex(colbert, dtype="float32", progress=False).install(tokens, offsets, ds.corpus, colbert)
    got, want = plaid.search(ds.queries, k=5), exact.search(ds.queries, k=5)
    for qid in want:
        assert list(got[qid]) == list(want[qid])
        np.testing.assert_allclose(list(got[qid].values()), list(want[qid].values()), atol=1e-5)


def test_plaid_is_close_to_exact_and_small(colbert: ColBERTEncoder, tiny: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny)
    exact = MaxSimIndex(colbert, progress=False).build(ds.corpus)
    plaid = PlaidIndex(colbert, nbits=4, progress=False).install(
        exact.tokens, exact._offsets, ds.corpus, colbert
    )
    for qid in ds.queries:
        a, b = exact.search(ds.queries, k=2)[qid], plaid.search(ds.queries, k=2)[qid]
        assert list(a) == list(b)
    exact.save(tmp_path / "exact")
    plaid.save(tmp_path / "plaid")
    per_token = sum((tmp_path / "plaid" / f).stat().st_size for f in ("codes.npy", "residuals.npy"))
    assert per_token < (tmp_path / "exact" / "tokens.npy").stat().st_size / 3  # 4 bits vs float16


def test_rerank_by_maxsim_only_reorders(colbert: ColBERTEncoder, tiny: Path) -> None:
    ds = load_dataset(tiny)
    index = MaxSimIndex(colbert, progress=False).build(ds.corpus)
    candidates = {"q1": {"d2": 3.0, "d3": 2.0, "d1": 1.0}, "q2": {"d4": 1.0, "d9": 0.5}, "q3": {}}
    scored = index.score_run(candidates, ds.queries)
    assert set(scored["q1"]) == {"d1", "d2", "d3"} and set(scored["q2"]) == {"d4"} and scored["q3"] == {}
    assert max(scored["q1"], key=scored["q1"].get) == "d1"
    full = index.search(ds.queries, k=5)
    assert scored["q1"]["d1"] == pytest.approx(full["q1"]["d1"], abs=1e-5)
    assert set(index.score_run(candidates, ds.queries, depth=2)["q1"]) == {"d2", "d3"}
    reranked = index.rerank(candidates, ds.queries)
    assert {q: set(r) for q, r in reranked.items()} == {q: set(r) for q, r in candidates.items()}


def test_a_killed_encoding_resumes(colbert: ColBERTEncoder, tiny: Path, tmp_path: Path) -> None:
    from pretriever.encoding import assemble_tokens, encode_shard

    ds = load_dataset(tiny)

    class Killed(Exception):
        pass

    class Dying:
        """The same encoder, killed after its first batch."""

        multivector = True
        calls = 0

        def __getattr__(self, name: str):
            return getattr(colbert, name)

        def encode_batch(self, texts, is_query=False):
            Dying.calls += 1
            if Dying.calls > 1:
                raise Killed
            return colbert.encode_batch(texts, is_query)

    work = tmp_path / "work"
    with pytest.raises(Killed):
        encode_shard(Dying(), ds.corpus, work, batch_size=2, chunk_batches=1, dtype="float16", progress=False)
    assert len(list(work.rglob("chunk-*.npz"))) == 1
    Dying.calls = -100  # the same command again: the first chunk is read back, not encoded
    encode_shard(Dying(), ds.corpus, work, batch_size=2, chunk_batches=1, dtype="float16", progress=False)
    assert Dying.calls == -100 + 2
    _, offsets = assemble_tokens(work, tmp_path / "tokens.npy")
    resumed = MaxSimIndex(colbert, progress=False).install(
        np.load(tmp_path / "tokens.npy"), offsets, ds.corpus, colbert
    )
    fresh = MaxSimIndex(colbert, batch_size=2, progress=False).build(ds.corpus)
    np.testing.assert_array_equal(resumed.tokens, fresh.tokens)


def test_a_saved_index_refuses_another_model(colbert: ColBERTEncoder, tiny: Path, tmp_path: Path) -> None:
    from pretriever.errors import ConfigError

    MaxSimIndex(colbert, progress=False).build(_corpus(tiny)).save(tmp_path / "idx")
    other = ColBERTEncoder(_tiny_bert(tmp_path / "bert"), backend="torch", precision="float32")
    with pytest.raises(ConfigError, match="differs"):
        MaxSimIndex.load(tmp_path / "idx", encoder=other)
    assert type(load_index(tmp_path / "idx")) is MaxSimIndex


def test_train_colbert_resumes_after_a_kill_and_saves_pylate_layout(tmp_path: Path) -> None:
    from pretriever.training.colbert import COLBERT, ColBERTConfig
    from pretriever.training.loop import LoopConfig
    from pretriever.training.negatives.static import NegativeConfig
    from pretriever.training.trainer import fit
    from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir

    qrels = [("q1", "d1", 1), ("q2", "d4", 1), ("q4", "d2", 1), ("q5", "d5", 1)]
    queries = [*TINY_QUERIES, {"_id": "q4", "text": "wind turbines"}, {"_id": "q5", "text": "dams"}]
    data = write_beir(tmp_path / "data", TINY_DOCS, queries, qrels, split="train")
    base = str(_tiny_bert(tmp_path / "bert"))
    config = ColBERTConfig(dataset=str(data), out=str(tmp_path / "model"), base=base,
                           first_stage="bm25", sampling="star", batch_size=2, max_length=32, dim=8,
                           negatives=NegativeConfig(hard=1, depth=5),
                           loop=LoopConfig(epochs=2, lr=1e-4, checkpoint_steps=1), dev_fraction=0.0)
    first = fit(COLBERT, config, progress=False, stop_after=1)
    assert not first.loop.finished and not (tmp_path / "model").exists()
    report = fit(COLBERT, config, progress=False)
    assert report.loop.finished and report.loop.resumed_from == 1 and report.loop.steps == 4
    encoder = ColBERTEncoder(tmp_path / "model")
    assert encoder.trained and encoder.dim == 8
    modules = json.loads((tmp_path / "model" / "modules.json").read_text())
    assert modules[1]["type"] == "pylate.models.Dense.Dense"
