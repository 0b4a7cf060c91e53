"""ADORE (Zhan et al. 2021, "Optimizing Dense Retrieval Model Training with Hard Negatives"):
train the query encoder against a fixed document index, negatives re-mined with the current query
encoder every ``adore_every`` steps (``negatives.dynamic``).

It takes ``TrainConfig`` with ``sampling = "adore"`` and writes two artefacts: the query encoder
to ``config.out`` (a plain sentence-transformers folder) and the document index, with that query
encoder recorded as its own, to ``<out>-index``: search that index. No document passes through the
model during training, so a step costs a query batch only (19 times the throughput of full
fine-tuning on SciFact, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pretriever.training.batching import unique_query_batches
from pretriever.training.biencoder import TrainConfig, judged_relevant
from pretriever.training.embedding import embed as embed_texts
from pretriever.training.loop import autocast, autocast_dtype
from pretriever.training.negatives.static import Example
from pretriever.training.splits import train_and_dev
from pretriever.training.trainer import Job, Plan, Trainer


def adore_index_path(out: str | Path) -> Path:
    """Where ADORE saves the fixed document index paired with the trained query encoder."""
    out = Path(out)
    return out.with_name(out.name + "-index")


def setup(job: Job) -> Plan:
    """The fixed document index (encoded once by the starting model), the query encoder trained
    against it, and the miner that re-ranks the index with the current query encoder."""
    import torch

    from pretriever.encoders.dense import DenseEncoder
    from pretriever.evaluation.measures import evaluate
    from pretriever.indexes.dense import FlatIndex
    from pretriever.training.negatives.dynamic import DynamicNegatives
    from pretriever.training.objectives.infonce import infonce

    config: TrainConfig = job.config
    dataset = job.dataset
    train_qrels, dev_qrels = train_and_dev(dataset, config)
    queries = dataset.queries
    index = FlatIndex(DenseEncoder(config.base, max_length=config.max_length), progress=job.progress,
                      work_dir=job.work / "encode").build(dataset.corpus)
    doc_row = {d: i for i, d in enumerate(dataset.corpus.ids)}
    doc_matrix = torch.from_numpy(np.ascontiguousarray(index.vectors, dtype=np.float32))
    encoder = DenseEncoder(config.base, device=config.device, backend="torch", precision="float32")
    st = encoder.st
    device = str(st.device)
    prompt = encoder.prompts["query"]
    dtype = autocast_dtype(config.precision, device)

    def embed(texts: list[str]) -> Any:
        return embed_texts(st, texts, config.query_max_length, normalize=encoder.normalize)

    def encode_now(ids: list[str]) -> np.ndarray:
        was_training = st.training
        st.eval()
        with torch.inference_mode(), autocast(device, dtype):
            parts = [embed([prompt + queries[q] for q in ids[i : i + 128]]).float().cpu()
                     for i in range(0, len(ids), 128)]
        st.train(was_training)
        return torch.cat(parts).numpy()

    train_ids = sorted(train_qrels)
    miner = DynamicNegatives(index, train_qrels, depth=max(config.negatives.depth, config.negatives.hard))
    examples = [Example(q, d, (), None, ()) for q in train_ids
                for d in sorted(x for x, g in train_qrels[q].items() if g > 0 and x in doc_row)]

    def batches(epoch: int) -> list[list[Example]]:
        order = np.random.default_rng([config.loop.seed, epoch]).permutation(len(examples))
        picked = [examples[i] for i in order]
        return unique_query_batches(picked[: config.max_examples] if config.max_examples else picked,
                                    config.batch_size)

    def loss(batch: list[Example], progress_epochs: float) -> Any:
        if not miner.pools:
            miner.refresh(train_ids, encode_now, 0)
        rows = []
        for ex in batch:
            negatives = miner.negatives(ex.query_id, config.negatives.hard)
            negatives += negatives[-1:] * (config.negatives.hard - len(negatives))  # rare: short pools
            rows.extend([doc_row[ex.positive], *(doc_row[d] for d in negatives)])
        q = embed([prompt + queries[ex.query_id] for ex in batch])
        exclude = judged_relevant(train_qrels, batch, [dataset.corpus.ids[r] for r in rows])
        return infonce(q, doc_matrix[rows].to(device), config.temperature, group=1 + config.negatives.hard,
                       exclude=exclude)

    def on_step(step: int) -> None:
        if step % config.adore_every == 0:
            miner.refresh(train_ids, encode_now, step)

    evaluate_fn = None
    if dev_qrels:
        dev_ids = list(dev_qrels)

        def evaluate_fn() -> float:
            run = index.search_vectors(dev_ids, encode_now(dev_ids), 100)
            return evaluate(dev_qrels, run, ["nDCG@10"]).metrics["nDCG@10"]

    index_out = adore_index_path(job.out)

    def after_save() -> None:
        index.set_query_encoder(DenseEncoder.load(job.out), trained_for_documents=True)
        index.save(index_out, overwrite=True)

    return Plan(model=st, batches=batches, loss=loss, save=encoder.save, base=encoder.source, device=device,
                counts={"train_queries": len(train_qrels), "dev_queries": len(dev_qrels),
                        "examples_per_epoch": len(batches(0)) * config.batch_size},
                details={"method": "ADORE (query encoder against a fixed document index)",
                         "document_index": str(index_out.resolve()), "dev_query_ids": sorted(dev_qrels)},
                evaluate=evaluate_fn, on_step=on_step, after_save=after_save,
                finalize=lambda result: {"remined_at_steps": miner.refreshed_at})


ADORE = Trainer("adore", TrainConfig, setup, command=("train", "--sampling", "adore"),
                outputs=lambda config: [Path(config.out), adore_index_path(config.out)])
