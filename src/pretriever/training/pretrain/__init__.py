"""Retrieval-oriented pre-training from a corpus alone (no queries, no qrels).

One task a file, each a pure pair/example generator plus its loss:
``ict`` (Inverse Cloze Task), ``bfs`` (Body First Selection), ``cropping`` (Contriever),
``prop`` (representative words prediction) and ``retromae`` (masked auto-encoding, with
DupMAE's bag-of-words head as an option). ``trainer.pretrain`` mixes any of them.
"""
