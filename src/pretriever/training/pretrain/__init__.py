"""Retrieval-oriented pre-training from a corpus alone (no queries, no qrels).

One task a file, each an ``Options`` dataclass, a pure example generator and its loss (``task``
says what a task is to the trainer): ``lexical`` (distillation from the starting model plus BM25),
``ict`` (Inverse Cloze Task), ``bfs`` (Body First Selection), ``cropping`` (Contriever), ``prop``
(representative words prediction) and ``retromae`` / ``dupmae`` (masked auto-encoding).
``registry.TASKS`` lists them by name; ``pretrainer.pretrain`` mixes any of them.
"""
