"""Can a zero-label change of the query side alone, documents fixed, carry the lexical teacher's gain?

The `lexical` pre-training task's teacher (MiniLM plus W x BM25, `pretriever.training.pretrain.lexical`)
ranks far better than MiniLM, and a student trained on both sides keeps a small part of that. This
diagnostic asks whether the query side is where that gain could be learned:

1. Upper bound, per real query (reads qrels, no training): move the query vector towards the mean of
   the teacher's top k documents (Rocchio 1971; the documents keep MiniLM's vectors), and search.
2. A query tower: a copy of MiniLM trained on the corpus' pseudo-queries (titles, sentences,
   keywords; never the real ones) to output that Rocchio vector, by cosine regression; documents
   keep MiniLM's vectors, so only the tower would change in an asymmetric model. Then searched with
   the real queries.

    python benchmarks/query_tower.py --datasets scifact,nfcorpus
"""

from __future__ import annotations

import argparse
import copy
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
from _common import append_results, machine_line, selection_split

LIBS = ("torch", "sentence-transformers", "transformers", "bm25s")


def rocchio(teacher: Any, scored: dict[str, dict[str, float]], vectors: np.ndarray, k: int,
            beta: float) -> np.ndarray:
    """Each query vector (in ``scored``'s order) plus ``beta`` x the mean of the vectors of its top ``k``
    documents in ``scored`` (the teacher's scores of that query), unit length."""
    rows = [[teacher.row[d] for d, _ in sorted(ranked.items(), key=lambda kv: -kv[1])[:k]]
            for ranked in scored.values()]
    moved = vectors + beta * np.stack([teacher.vectors[r].mean(0) for r in rows])
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def encode(model: Any, texts: list[str]) -> np.ndarray:
    """Unit query vectors from a sentence-transformers model in torch fp32 (the tower's own path)."""
    import torch

    with torch.no_grad():
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


def train_tower(teacher: Any, docs: list[Any], args: argparse.Namespace) -> Any:
    """A copy of the teacher's encoder trained so that a pseudo-query's vector is its Rocchio vector."""
    import torch

    from pretriever.training.pretrain.lexical import pseudo_queries

    texts, targets = [], []
    for epoch in range(args.epochs):  # a fresh pseudo-query per document and epoch
        queries = pseudo_queries(docs, kinds=args.kinds.split(","), seed=args.seed, epoch=epoch)
        texts += list(queries.values())
        targets.append(rocchio(teacher, teacher.scores(queries),
                               encode(teacher.encoder.st, list(queries.values())), args.k, args.train_beta))
    target = torch.tensor(np.concatenate(targets))
    torch.manual_seed(args.seed)
    tower = copy.deepcopy(teacher.encoder.st).train()
    tower.max_seq_length = args.query_length
    optimizer = torch.optim.AdamW(tower.parameters(), lr=args.lr, weight_decay=0.01)
    steps = -(-len(texts) // args.batch_size)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 1 - s / steps))
    order = np.random.default_rng(args.seed).permutation(len(texts))
    for step in range(steps):
        rows = order[step * args.batch_size : (step + 1) * args.batch_size]
        out = tower(tower.preprocess([texts[i] for i in rows]))["sentence_embedding"]
        loss = (1 - (torch.nn.functional.normalize(out, dim=-1) * target[rows]).sum(-1)).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps}: 1 - cos {loss.item():.4f}", flush=True)
    return tower.eval()


def split_rows(dataset: Any, split: str, teacher: Any, tower: Any, args: argparse.Namespace,
               betas: list[float], seconds: float) -> list[str]:
    """nDCG@10 on ``split`` of MiniLM, the teacher, Rocchio at each beta and the tower, Δ against MiniLM."""
    from pretriever.evaluation import compare, evaluate

    queries, qrels = dict(dataset.split_queries(split)), dataset.qrels(split)
    qids, texts = list(queries), list(queries.values())

    def search(vectors: np.ndarray, label: str) -> Any:
        return evaluate(qrels, teacher.dense.search_vectors(qids, vectors, 100), ["nDCG@10"], name=label)

    base, learned = encode(teacher.encoder.st, texts), encode(tower, texts)
    scored = teacher.scores(queries)  # once: the teacher's row and every Rocchio row read it
    evaluations = [search(base, "MiniLM"),
                   evaluate(qrels, scored, ["nDCG@10"], name=f"teacher (W={args.weight:g})"),
                   *(search(rocchio(teacher, scored, base, args.k, b), f"Rocchio, k={args.k}, beta={b:g}")
                     for b in betas),
                   search(learned, f"query tower ({seconds / 60:.1f} min)")]
    return [f"{ev.name} | {ev.metrics['nDCG@10']:.4f} | "
            + ("" if cmp is None else f"{cmp.delta:+.4f} (p={cmp.p_value:.3f})") + " |"
            for cmp, ev in zip([None, *compare(evaluations, "nDCG@10")], evaluations)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--weight", type=float, default=3.0, help="the teacher's BM25 weight W")
    parser.add_argument("--k", type=int, default=3, help="teacher documents averaged into the query")
    parser.add_argument("--betas", default="0.5,1", help="Rocchio weights of the upper bound")
    parser.add_argument("--train-beta", type=float, default=1.0, help="the Rocchio weight the tower learns")
    parser.add_argument("--kinds", default="title,sentence,keywords", help="pseudo-query kinds")
    parser.add_argument("--epochs", type=int, default=2, help="pseudo-queries per document")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--query-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from pretriever.data import load_dataset
    from pretriever.training.pretrain.lexical import LexicalTeacher
    from pretriever.training.pretrain.trainer import corpus_docs

    betas = [float(b) for b in args.betas.split(",")]
    rows = []
    for name in args.datasets.split(","):
        dataset = load_dataset(name)
        # documents at the model's own length (256): the vectors an index of MiniLM holds
        teacher = LexicalTeacher(dataset.corpus, "minilm", weight=args.weight, temperature=0.05, depth=30,
                                 progress=False)
        start = time.perf_counter()
        tower = train_tower(teacher, corpus_docs(dataset.corpus), args)
        seconds = time.perf_counter() - start
        for split in (selection_split(dataset), "test"):
            for row in split_rows(dataset, split, teacher, tower, args, betas, seconds):
                rows.append(f"| {name} | {split} | {row}")
                print(rows[-1], flush=True)

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## The query side alone: teacher-guided Rocchio and a trained query tower ({stamp})", "",
        machine_line(LIBS), "",
        f"Documents keep MiniLM's vectors (256 tokens). Teacher: MiniLM + {args.weight:g} x BM25, top 30 of "
        f"each. Query tower: {args.epochs} pseudo-queries per document ({args.kinds}), cosine regression "
        f"to the Rocchio vector (k={args.k}, beta={args.train_beta:g}), lr {args.lr:g}, batch "
        f"{args.batch_size}. Δ (p) against MiniLM on the same split (paired randomization test).", "",
        "| dataset | split | query vectors | nDCG@10 | Δ (p) |", "|---|---|---|---:|---:|", *rows, ""])
    print(section)
    if not args.no_append:
        append_results(section)


if __name__ == "__main__":
    main()
