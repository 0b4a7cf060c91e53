"""Which calibration pairs (and float-kept layers) bring the int8 reranker closest to fp32?

The experiment behind the int8-reranker section of RESULTS.md. Each variant builds an int8 model
with ``optimize`` (its calibration pairs swapped in), then scores every SciFact test query x its
hybrid top 20 and prints nDCG@10, the score correlation with fp32 and pairs/s. A variant is
MODE-K[-FLAG...]: MODE ``pseudo`` (the shipped pairs, K per document), ``first`` (a document's first
12 words x its K BM25 neighbours in the corpus) or ``sent`` (a random sentence x K neighbours);
``-ffn`` keeps the FFN output projections in float; ``-b1`` calibrates one pair at a time (no
padding tokens in the activation statistics); ``-bc`` runs nncf's full bias correction instead of
the fast one; ``-bf`` runs the int8 model with OpenVINO's bf16 precision hint, so the ops left in
float compute in bf16.

    python benchmarks/int8_reranker_calibration.py --model models/sf-reranker pseudo-2 first-4 first-4-ffn
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FFN_OUT = r".*layer\.\d+\.output\.dense.*"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a cross-encoder folder")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--calibration", type=int, default=300, help="calibration documents")
    parser.add_argument("variants", nargs="+", help="MODE-K[-ffn][-b1][-bc][-bf], e.g. pseudo-2 pseudo-2-b1")
    args = parser.parse_args()

    import nncf

    import pretriever.optimize as opt
    from pretriever.data import load_dataset
    from pretriever.encoders.cross import Reranker, rerank_scores
    from pretriever.encoders.openvino import OpenVINORunner, quantize_int8
    from pretriever.evaluation import evaluate
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.runs import ranked
    from pretriever.training.pretrain._text import sentences
    from pretriever.training.reranker import first_stage_run

    dataset = load_dataset(args.dataset)
    qrels, queries = dataset.qrels("test"), dataset.split_queries("test")
    first = first_stage_run(dataset, "hybrid", queries, 20, progress=False)
    texts = dataset.corpus.text_map()
    keys = [(q, hit.doc_id) for q in queries for hit in ranked(first.get(q, {}), 20)]
    pairs = [(queries[q], texts[d]) for q, d in keys]

    def ndcg(values: np.ndarray) -> float:
        scores: dict[str, dict[str, float]] = {q: {} for q in queries}
        for (q, d), v in zip(keys, values.tolist(), strict=True):
            scores[q][d] = v
        return evaluate(qrels, rerank_scores(first, scores), ["nDCG@10"]).metrics["nDCG@10"]

    exact = Reranker.load(args.model, backend="torch", precision="float32").score(pairs)
    print(f"fp32: {len(pairs)} pairs, nDCG@10 {ndcg(exact):.4f}", flush=True)
    index = BM25Index().build(dataset.corpus)

    def neighbour_pairs(docs: list[str], seed: int, k: int, mode: str) -> list[tuple[str, str]]:
        rng = np.random.default_rng(seed)
        pseudo = {}
        for j, text in enumerate(docs):
            parts = sentences(text) if mode == "sent" else []
            pseudo[str(j)] = parts[int(rng.integers(len(parts)))] if parts else " ".join(text.split()[:12])
        run = index.search(pseudo, k=k)
        return [(pseudo[q], texts[hit.doc_id]) for q in pseudo for hit in ranked(run.get(q, {}), k)]

    quantize = nncf.quantize
    real_init = OpenVINORunner.__init__
    for name in args.variants:
        mode, k, *flags = name.split("-")
        extra: dict[str, Any] = {}
        if "ffn" in flags:
            extra["ignored_scope"] = nncf.IgnoredScope(patterns=[FFN_OUT], validate=False)
        if "bc" in flags:
            extra["fast_bias_correction"] = False
        batch = 1 if "b1" in flags else 8

        def calibrate(self: Any, ov_model: Any, docs: list[str], mode: str = mode, k: int = int(k),
                      batch: int = batch) -> Any:
            chosen = (opt._pseudo_pairs(docs, self.seed, group=k) if mode == "pseudo"
                      else neighbour_pairs(docs, self.seed, k, mode))
            return quantize_int8(ov_model, self.tokenizer, [q for q, _ in chosen], self.max_length,
                                 pairs_with=[d for _, d in chosen], batch_size=batch)

        opt._Cross.calibrate = calibrate
        nncf.quantize = lambda *a, extra=extra, **kw: quantize(*a, **{**kw, **extra})
        work = Path(tempfile.mkdtemp())
        try:
            report = opt.optimize(args.model, dataset.corpus, precision="int8", out=work / "int8",
                                  calibration=args.calibration, check=100, force=True)
            if "bf" in flags:
                OpenVINORunner.__init__ = lambda runner, model, precision, threads=None: real_init(
                    runner, model, "bfloat16" if precision == "int8" else precision, threads)
            reranker = Reranker.load(work / "int8", backend="openvino", precision="int8")
            start = time.perf_counter()
            fast = reranker.score(pairs)
            seconds = time.perf_counter() - start
        finally:
            OpenVINORunner.__init__ = real_init
            shutil.rmtree(work)
        print(f"{name}: nDCG@10 {ndcg(fast):.4f}, correlation {np.corrcoef(fast, exact)[0, 1]:.5f}, "
              f"guard {report.quality:.5f}, {len(pairs) / seconds:.1f} pairs/s", flush=True)


if __name__ == "__main__":
    main()
