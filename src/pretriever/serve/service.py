"""The search service: what ``pretriever serve`` offers, with no HTTP in it.

``Service`` wraps a ``LiveIndex`` (``retrieval/live.py``) and owns everything a transport would
otherwise repeat: the checks on user input and the limits that keep one request from starving the
others (each a ``ConfigError`` that says what was wrong and what is allowed), the order of hits,
the RAG context packing with a tokenizer loaded once, health and metrics. The HTTP app and the MCP
server are thin adapters over it, so both answer the same way and it can be used in-process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, fields
from typing import Any

from pretriever.errors import ConfigError, TextsUnavailableError
from pretriever.serve.metrics import Metrics
from pretriever.types import Document

__all__ = ["Limits", "Service"]

Hits = list[dict[str, Any]]
"""One query's results: ``[{"rank": 1, "doc_id": ..., "score": ...}, ...]`` in rank order."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; past these the service answers a ConfigError (HTTP 400/413)."""

    max_k: int = 1000
    max_batch: int = 64  # queries in one search request
    max_documents: int = 1000  # documents in one add request
    max_body_bytes: int = 8 * 1024 * 1024  # enforced by the transport (HTTP 413)
    max_query_chars: int = 2000
    max_budget: int = 32768  # context tokens

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"limit {f.name} must be a positive integer, got {value!r}")


class Service:
    """Search, update and read a live index, checking every request against ``limits``.

    ``tokenizer`` counts context tokens: a model name or folder ("minilm" = the bundled one), an
    object with ``encode`` or a function text -> count; it is loaded once, on the first context.
    ``batching`` (on by default) searches concurrent single-query requests with the same options as
    one batch, formed while the previous batch runs (``_MicroBatcher``: a lone request never
    waits); at most ``max_batch_queries`` a batch. Measured in benchmarks/serve.py (RESULTS.md,
    "Serving").
    """

    def __init__(
        self,
        live: Any,
        *,
        limits: Limits | None = None,
        tokenizer: Any = "minilm",
        batching: bool = True,
        max_batch_queries: int = 32,
    ) -> None:
        if max_batch_queries < 1:
            raise ConfigError(f"max_batch_queries must be at least 1, got {max_batch_queries}")
        self.live = live
        self.limits = limits or Limits()
        self.metrics = Metrics()
        self._tokenizer = tokenizer
        self._count: Callable[[str], int] | None = None
        self._count_lock = threading.Lock()
        self._batcher = _MicroBatcher(self._search_batch, max_batch_queries) if batching else None

    # -- reading ---------------------------------------------------------------------------------

    def search(self, queries: list[str], k: int = 10, member: str | None = None,
               rerank: bool = True) -> list[Hits]:
        """The top-``k`` hits of each query, in the order of ``queries``; ties by doc id."""
        if isinstance(queries, str) or not isinstance(queries, (list, tuple)):
            raise ConfigError("queries must be a list of query texts (one text: [text])")
        if not queries:
            raise ConfigError("no queries given: send at least one query text")
        if len(queries) > self.limits.max_batch:
            raise ConfigError(f"too many queries in one request: {len(queries)} (at most "
                              f"{self.limits.max_batch}); split them into smaller batches")
        for i, query in enumerate(queries):
            self._check_query(query, f"query {i}" if len(queries) > 1 else "the query")
        _check_int(k, "k", self.limits.max_k)
        self.live.check_member(member)  # before batching: the error is this request's alone
        key = (k, member, bool(rerank))
        if self._batcher is not None and len(queries) == 1:
            return [self._batcher.submit(key, queries[0])]
        return self._search_batch(key, list(queries))

    def get(self, doc_id: str) -> dict[str, str]:
        """One document's id, title and text (``UnknownDocumentError`` for an id not in the index,
        ``TextsUnavailableError`` when the server has only vectors or terms)."""
        self._check_id(doc_id, "the document id")
        document = self.live.get(doc_id)
        return {"id": document.id, "title": document.title, "text": document.text}

    def context(self, query: str, k: int = 10, budget: int = 1024, max_overlap: float = 0.8,
                order: str = "edges", cite: bool = True) -> dict[str, Any]:
        """The top-``k`` passages for ``query`` packed into at most ``budget`` tokens, with
        citations (``retrieval/context.py``: near-duplicates dropped, strongest at both ends)."""
        from pretriever.retrieval.context import assemble

        self._check_query(query, "the query")
        _check_int(k, "k", self.limits.max_k)
        _check_int(budget, "budget (tokens)", self.limits.max_budget)
        if not self.live.has_texts:  # before searching: without texts there is nothing to pack
            raise TextsUnavailableError(
                f"{self.live.path} keeps vectors or terms only and its corpus was not found, so there are no "
                "passages to pack; start the server with the corpus (`pretriever serve DIR --corpus FILE`)")
        texts = self.live.texts()
        hits = {h["doc_id"]: h["score"] for h in self.search([query], k)[0]
                if h["doc_id"] in texts}  # not one deleted since the search
        packed = assemble(hits, texts, budget=budget,
                          count=self._counter(), max_overlap=max_overlap, order=order, cite=cite)
        return {
            "text": packed.text,
            "citations": [{"doc_id": c.doc_id, "rank": c.rank, "score": c.score, "start": c.start,
                           "end": c.end} for c in packed.citations],
            "tokens": packed.tokens,
            "dropped_duplicates": list(packed.dropped_duplicates),
            "over_budget": list(packed.over_budget),
        }

    def warm_up(self) -> None:
        """One search and one document prepared (not added), before the first request: OpenVINO
        compiles its kernels on the first inputs it sees (measured ~2 s for a document-length
        input on MiniLM), which would otherwise stall the first update and every search queued
        behind it."""
        from pretriever.data.corpus import Corpus

        self.live.search({"warm-up": "warm up"}, k=1)
        self.live.index.prepare_add(Corpus(["warm-up"], [""], [" ".join(["warm up"] * 300)]))

    def health(self) -> dict[str, Any]:
        """What a load balancer or a person checks: the index kind, size and last update."""
        stats = self.live.stats()
        return {
            "status": "ok",
            "kind": stats["kind"],
            "documents": stats["documents"],
            "seq": stats["seq"],
            "pending_updates": stats["pending_updates"],
            "texts": bool(self.live.has_texts),
            "members": list(self.live.members()),
        }

    def metrics_text(self) -> str:
        """Request metrics and the index's gauges, in the Prometheus text format."""
        health = self.health()
        return self.metrics.render({
            "pretriever_index_documents": ("Documents in the index.", health["documents"]),
            "pretriever_index_seq": ("Number of the last applied durable update (0 = none).", health["seq"]),
            "pretriever_index_pending_updates": ("Update log entries not yet compacted into the index.",
                                                 health["pending_updates"]),
        })

    # -- writing ---------------------------------------------------------------------------------

    def add(self, documents: Iterable[Document | Mapping[str, Any]], upsert: bool = False) -> dict[str, int]:
        """Add documents (``{"id", "title", "text"}`` or ``Document``); durable when this returns.
        An id already in the index is a ``DuplicateDocumentError`` unless ``upsert`` replaces it."""
        if isinstance(documents, (str, bytes, Mapping)):
            raise ConfigError("documents must be a list of documents, each {'id', 'title', 'text'}")
        items = list(documents)
        if len(items) > self.limits.max_documents:
            raise ConfigError(f"too many documents in one request: {len(items)} (at most "
                              f"{self.limits.max_documents}); send them in smaller batches")
        batch = [self._document(item, i) for i, item in enumerate(items)]
        if not batch:
            raise ConfigError("no documents given: send at least one {'id', 'title', 'text'}")
        seq = self.live.add(batch, upsert=bool(upsert))
        return {"seq": int(seq), "added": len(batch)}

    def delete(self, doc_id: str) -> dict[str, int]:
        """Delete one document; durable when this returns (``UnknownDocumentError`` if absent)."""
        self._check_id(doc_id, "the document id")
        return {"seq": int(self.live.delete([doc_id]))}

    def close(self) -> None:
        """Wait for an in-flight update and release the index's writer lock."""
        self.live.close()

    # -- internals -------------------------------------------------------------------------------

    def _search_batch(self, key: tuple[int, str | None, bool], queries: list[str]) -> list[Hits]:
        k, member, rerank = key
        run = self.live.search({str(i): q for i, q in enumerate(queries)}, k, member=member, rerank=rerank)
        return [_hits(run.get(str(i), {}), k) for i in range(len(queries))]

    def _counter(self) -> Callable[[str], int]:
        with self._count_lock:
            if self._count is None:
                from pretriever.retrieval.context import token_counter

                tokenizer = self._tokenizer
                if callable(tokenizer) and not hasattr(tokenizer, "encode"):
                    self._count = tokenizer
                else:
                    self._count = token_counter(tokenizer)
            return self._count

    def _check_query(self, query: Any, what: str) -> None:
        if not isinstance(query, str):
            raise ConfigError(f"{what} must be a text, got {type(query).__name__}")
        if not query.strip():
            raise ConfigError(f"{what} is empty: send the words to search for")
        if len(query) > self.limits.max_query_chars:
            raise ConfigError(f"{what} is {len(query)} characters long (at most "
                              f"{self.limits.max_query_chars}); shorten it")

    @staticmethod
    def _check_id(doc_id: Any, what: str) -> None:
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise ConfigError(f"{what} must be a non-empty text, got {doc_id!r}")

    def _document(self, item: Any, i: int) -> Document:
        if isinstance(item, Document):
            values = {"id": item.id, "text": item.text, "title": item.title}
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - {"id", "text", "title"})
            if unknown:
                raise ConfigError(f"document {i} has unknown field(s) {', '.join(unknown)}; a document has "
                                  "id, title and text")
            values = {"id": item.get("id"), "text": item.get("text", ""), "title": item.get("title", "")}
        else:
            raise ConfigError(f"document {i} must be an object with id, title and text, got "
                              f"{type(item).__name__}")
        if not isinstance(values["id"], str) or not values["id"].strip():
            raise ConfigError(f"document {i} has no id: every document needs a non-empty 'id'")
        for name in ("text", "title"):
            if not isinstance(values[name], str):
                raise ConfigError(f"document {i} ({values['id']!r}): {name} must be a text, got "
                                  f"{type(values[name]).__name__}")
        return Document(values["id"], values["text"], values["title"])


def _check_int(value: Any, name: str, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigError(f"{name} must be an integer from 1 to {most}, got {value!r}")


def _hits(scores: Mapping[str, float], k: int) -> Hits:
    """One query's scores as ranked hits: score descending, ties by doc id ascending."""
    order = sorted(((doc_id, float(score)) for doc_id, score in scores.items()),
                   key=lambda item: (-item[1], item[0]))[:k]
    return [{"rank": rank, "doc_id": doc_id, "score": score} for rank, (doc_id, score) in enumerate(order, 1)]


class _MicroBatcher:
    """Concurrent single-query searches with the same options, searched as batches.

    Opportunistic, with no waiting window: a request that finds no batch of its kind running
    searches at once; requests that arrive while one runs queue, and when it ends one of them
    searches every queued query (at most ``max_size``) as the next batch. One client alone gets the
    latency of a plain search; under load the per-call costs (a forward pass, bm25s's per-call
    work, fusion) are shared. No thread of its own: it runs in the callers' threads.
    """

    def __init__(self, run: Callable[[Any, list[str]], list[Hits]], max_size: int) -> None:
        self._run = run
        self.max_size = max_size
        self._cond = threading.Condition()
        self._queued: dict[Any, list[tuple[str, Future[Hits]]]] = {}
        self._running: set[Any] = set()

    def submit(self, key: Any, query: str) -> Hits:
        future: Future[Hits] = Future()
        with self._cond:
            self._queued.setdefault(key, []).append((query, future))
        while True:
            with self._cond:
                while not future.done() and key in self._running:
                    self._cond.wait()
                if future.done():
                    break
                # nothing of this kind runs: this thread searches what is queued (its own query
                # included, unless more than max_size were queued before it)
                queue = self._queued[key]
                batch, self._queued[key] = queue[: self.max_size], queue[self.max_size :]
                self._running.add(key)
            try:
                self._execute(key, batch)
            finally:
                with self._cond:
                    self._running.discard(key)
                    self._cond.notify_all()
        return future.result()

    def _execute(self, key: Any, batch: list[tuple[str, Future[Hits]]]) -> None:
        try:
            results = self._run(key, [query for query, _ in batch])
        except BaseException as exc:  # every request of the batch gets it, raised in its own thread
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), hits in zip(batch, results):
            future.set_result(hits)
