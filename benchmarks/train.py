"""Bi-encoder training throughput: pretriever's trainer vs a plain sentence-transformers loop.

Peer: the same MiniLM trained with sentence-transformers' own ``MultipleNegativesRankingLoss`` in
a plain PyTorch loop (AdamW, linear warm-up and decay, gradient clipping: what the ST trainer
runs, without the ``datasets``/``accelerate`` dependencies it needs). Both train on the very same
batches (SciFact train: query, positive, one BM25 hard negative; the batches pretriever draws are
recorded and replayed to the peer, since throughput depends on the texts' lengths), batch 32, max
256 tokens, the same number of steps, each in fp32 and in bf16 autocast. Reported: examples/s over
the timed steps (model loading and data preparation excluded for both). Writes its section of
RESULTS.md.

    python benchmarks/train.py [--dataset scifact] [--steps 8] [--no-append]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import machine_line, record_section

LIBS = ("torch", "sentence-transformers", "transformers")
BATCH = 32


def st_loop(batches, queries, texts, steps: int, bf16: bool) -> float:
    """examples/s of a plain loop over ST's MultipleNegativesRankingLoss on ``batches``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import get_linear_schedule_with_warmup

    from pretriever.encoders.backends import bundled_model_path

    torch.manual_seed(42)
    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    model.max_seq_length = 256
    loss_fn = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, steps // 10), steps)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = batches[step]
        columns = [[queries[ex.query_id] for ex in batch], [texts[ex.positive] for ex in batch],
                   [texts[ex.negatives[0]] for ex in batch]]
        features = [model.tokenize(c) for c in columns]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH / (time.perf_counter() - start)


def ours(dataset: str, steps: int, precision: str) -> tuple[float, list]:
    """examples/s of ``pretriever train``, and the batches it trained on."""
    import pretriever.training.trainer as skeleton
    from pretriever.training.biencoder import TrainConfig
    from pretriever.training.loop import LoopConfig
    from pretriever.training.negatives.static import NegativeConfig
    from pretriever.training.registry import train

    seen: list = []
    real_loop = skeleton.train_loop

    def recording_loop(model, batches, *args, **kwargs):
        seen.extend(batches(0)[:steps])
        return real_loop(model, batches, *args, **kwargs)

    skeleton.train_loop = recording_loop
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        config = TrainConfig(dataset=dataset, out=str(tmp / "m"), first_stage="bm25", sampling="star",
                             dev_fraction=0.0,
                             negatives=NegativeConfig(hard=1, depth=100), batch_size=BATCH,
                             max_length=256, query_max_length=256, precision=precision,
                             loop=LoopConfig(epochs=1, lr=3e-5, checkpoint_steps=10_000))
        report = train(config, progress=False, stop_after=steps, work=tmp / "work")
        return report.loop.examples_per_second, seen
    finally:
        skeleton.train_loop = real_loop
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--no-append", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()

    from pretriever.data import load_dataset

    ds = load_dataset(args.dataset)
    texts = ds.corpus.text_map()
    rows = []
    for label, precision, bf16 in (("fp32", "float32", False), ("bf16 autocast", "bfloat16", True)):
        mine, batches = ours(args.dataset, args.steps, precision)
        peer = st_loop(batches, ds.queries, texts, args.steps, bf16)
        rows.append(f"| {label} | {peer:.2f} | {mine:.2f} | {mine / peer:.2f}x |")
        print(rows[-1], flush=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## Training throughput: bi-encoder on {ds.name} train ({when})", "",
        machine_line(LIBS),
        f"- Method: all-MiniLM-L6-v2, InfoNCE / MultipleNegativesRankingLoss with in-batch + 1 BM25 hard "
        f"negative, batch {BATCH}, max 256 tokens, AdamW lr 3e-5, {args.steps} steps each on the same "
        "batches (pretriever's, replayed to the peer); examples/s over the training steps (model load "
        "and data preparation excluded for both).",
        "", "| precision | plain ST loop (examples/s) | pretriever train (examples/s) | ratio |",
        "|---|---:|---:|---:|", *rows,
    ])
    print(section)
    if not args.no_append:
        record_section(section)


if __name__ == "__main__":
    main()
