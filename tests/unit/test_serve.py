"""The search service and its HTTP layer, in process on a tiny live BM25 index: every endpoint,
every 4xx with a JSON error that teaches, the API key, the body limit, Prometheus metrics, the
micro-batcher, the CLI's refusals and the MCP tools over the same service."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")  # the serve extra
from fastapi.testclient import TestClient

from pretriever.cli import main
from pretriever.errors import ConfigError, DuplicateDocumentError, UnknownDocumentError
from pretriever.serve.http import create_app
from pretriever.serve.service import Limits, Service
from pretriever.types import Document

DOCS = [
    Document("d1", "statins reduce mortality in patients with heart disease", "Statins"),
    Document("d2", "vitamin d supplements and bone health in older adults"),
    Document("d3", "aspirin for the prevention of a first heart attack"),
    Document("d4", "regular exercise improves heart health and sleep"),
    Document("d5", "sleep and memory consolidation in students"),
]
LIMITS = Limits(max_k=50, max_batch=4, max_documents=3, max_body_bytes=4096, max_query_chars=200,
                max_budget=2000)


def words(text: str) -> int:
    """A cheap token counter (no tokenizer to load): one token a word."""
    return len(text.split())


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    from pretriever.indexes.bm25 import BM25Index

    return BM25Index(progress=False).build(DOCS).save(tmp_path / "idx")


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in DOCS),
                    "utf-8")
    return path


@pytest.fixture
def service(index_dir: Path, corpus_file: Path) -> Iterator[Service]:
    from pretriever.retrieval.live import LiveIndex

    svc = Service(LiveIndex.open(index_dir, corpus=corpus_file), limits=LIMITS, tokenizer=words)
    yield svc
    svc.close()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as test_client:
        yield test_client


def ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["doc_id"] for h in hits]


# -- search, updates, documents -------------------------------------------------------------------

def test_search_one_query_and_a_batch(client: TestClient, service: Service) -> None:
    one = client.post("/search", json={"query": "heart disease", "k": 3})
    assert one.status_code == 200
    (hits,) = one.json()["results"]
    assert ids(hits)[0] == "d1" and [h["rank"] for h in hits] == [1, 2, 3]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    batch = client.post("/search", json={"queries": ["heart disease", "vitamin d bone"], "k": 2}).json()
    assert batch["results"][0] == hits[:2] and ids(batch["results"][1])[0] == "d2"
    assert batch["results"] == service.search(["heart disease", "vitamin d bone"], 2)


def test_warm_up_changes_nothing(service: Service) -> None:
    before = (len(service.live), service.live.seq, service.search(["heart disease"], 5))
    service.warm_up()
    assert (len(service.live), service.live.seq, service.search(["heart disease"], 5)) == before
    assert "warm-up" not in service.live


def test_ties_break_on_doc_id(client: TestClient) -> None:
    twins = [{"id": i, "text": "quarks and gluons"} for i in ("t2", "t1", "t3")]
    client.post("/documents", json={"documents": twins})
    hits = client.post("/search", json={"query": "gluons"}).json()["results"][0]
    assert ids(hits) == ["t1", "t2", "t3"] and len({h["score"] for h in hits}) == 1


def test_add_upsert_delete_and_get(client: TestClient) -> None:
    added = client.post("/documents", json={"documents": [{"id": "n1", "title": "Physics",
                                                           "text": "quantum chromodynamics and gluons"}]})
    assert added.status_code == 200 and added.json() == {"seq": 1, "added": 1}
    assert ids(client.post("/search", json={"query": "gluons"}).json()["results"][0]) == ["n1"]
    assert client.get("/documents/n1").json() == {"id": "n1", "title": "Physics",
                                                  "text": "quantum chromodynamics and gluons"}

    again = client.post("/documents", json={"documents": [{"id": "n1", "text": "anything"}]})
    assert again.status_code == 409 and "n1" in again.json()["error"]

    upserted = client.post("/documents", json={"documents": [{"id": "n1", "text": "banana smoothie recipe"}],
                                               "upsert": True})
    assert upserted.status_code == 200 and upserted.json()["seq"] == 2
    assert "n1" not in ids(client.post("/search", json={"query": "gluons"}).json()["results"][0])
    assert ids(client.post("/search", json={"query": "banana smoothie"}).json()["results"][0]) == ["n1"]

    deleted = client.delete("/documents/n1")
    assert deleted.status_code == 200 and deleted.json() == {"seq": 3}
    assert client.get("/documents/n1").status_code == 404
    assert client.delete("/documents/n1").status_code == 404
    assert "n1" not in ids(client.post("/search", json={"query": "banana smoothie"}).json()["results"][0])
    health = client.get("/health").json()
    assert health["documents"] == len(DOCS) and health["seq"] == 3


def test_get_a_document_of_the_original_corpus(client: TestClient) -> None:
    assert client.get("/documents/d1").json() == {"id": "d1", "title": "Statins", "text": DOCS[0].text}


def test_updates_survive_a_restart(index_dir: Path, corpus_file: Path) -> None:
    from pretriever.retrieval.live import LiveIndex

    for step in range(2):
        service = Service(LiveIndex.open(index_dir, corpus=corpus_file), limits=LIMITS, tokenizer=words)
        with TestClient(create_app(service)) as client:
            if step == 0:
                client.post("/documents", json={"documents": [{"id": "n1", "text": "gluons and quarks"}]})
                client.delete("/documents/d5")
            else:  # a new process on the same folder: the acknowledged updates are there
                assert client.get("/health").json()["seq"] == 2
                assert ids(client.post("/search", json={"query": "gluons"}).json()["results"][0]) == ["n1"]
                assert client.get("/documents/d5").status_code == 404
        service.close()


def test_without_the_texts_reads_say_to_pass_the_corpus(index_dir: Path) -> None:
    from pretriever.retrieval.live import LiveIndex

    service = Service(LiveIndex.open(index_dir), limits=LIMITS, tokenizer=words)  # no corpus
    try:
        with TestClient(create_app(service)) as client:
            assert client.get("/health").json()["texts"] is False
            assert client.post("/search", json={"query": "heart"}).status_code == 200
            for response in (client.get("/documents/d1"), client.post("/context", json={"query": "heart"})):
                assert response.status_code == 409 and "--corpus" in response.json()["error"]
            client.post("/documents", json={"documents": [{"id": "n1", "text": "added text"}]})
            assert client.get("/documents/n1").json()["text"] == "added text"  # added texts are logged
    finally:
        service.close()


@pytest.mark.slow  # importing the pipeline's fusion (ranx, numba): ~6 s from a cold start
def test_a_pipeline_member_and_the_first_stage(tmp_path: Path) -> None:
    from pretriever.data.corpus import Corpus
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.retrieval.live import LiveIndex
    from pretriever.retrieval.pipeline import Pipeline

    members = {"lucene": BM25Index(progress=False), "plus": BM25Index(method="bm25+", progress=False)}
    Pipeline(members).build(Corpus.from_documents(DOCS)).save(tmp_path / "pipe")
    service = Service(LiveIndex.open(tmp_path / "pipe"), limits=LIMITS, tokenizer=words)
    try:
        with TestClient(create_app(service)) as client:
            assert client.get("/health").json()["members"] == ["lucene", "plus"]
            plus = client.post("/search", json={"query": "heart disease", "member": "plus"}).json()["results"]
            scores = members["plus"].search({"q": "heart disease"}, 10)["q"]
            expected = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
            assert [(h["doc_id"], h["score"]) for h in plus[0]] == expected
            fused = client.post("/search", json={"query": "heart disease", "rerank": False}).json()["results"]
            assert ids(fused[0])[0] == "d1"
            unknown = client.post("/search", json={"query": "heart", "member": "dense"})
            assert unknown.status_code == 400 and "lucene, plus" in unknown.json()["error"]
    finally:
        service.close()


# -- every 4xx is JSON that says what to do ---------------------------------------------------------

BAD_REQUESTS = [
    ("POST", "/search", {"query": ""}, 400, "empty"),
    ("POST", "/search", {"query": "   \n"}, 400, "empty"),
    ("POST", "/search", {"query": "heart", "k": 0}, 400, "k must be an integer from 1 to 50"),
    ("POST", "/search", {"query": "heart", "k": 51}, 400, "k must be an integer from 1 to 50"),
    ("POST", "/search", {"queries": ["a", "b", "c", "d", "e"]}, 400, "too many queries"),
    ("POST", "/search", {"queries": []}, 400, "no queries"),
    ("POST", "/search", {"query": "x" * 201}, 400, "at most 200"),
    ("POST", "/search", {}, 400, "either 'query'"),
    ("POST", "/search", {"query": "a", "queries": ["b"]}, 400, "not both"),
    ("POST", "/search", {"query": 5}, 400, "query"),
    ("POST", "/search", {"query": "heart", "k": "10"}, 400, "k"),
    ("POST", "/search", {"query": "heart", "k": 2.5}, 400, "k"),
    ("POST", "/search", {"query": "heart", "rerank": "no"}, 400, "rerank"),
    ("POST", "/search", {"query": "heart", "kk": 3}, 400, "kk"),
    ("POST", "/search", ["heart"], 400, "body"),
    ("POST", "/search", {"query": "heart", "member": "dense"}, 400, "single index"),
    ("POST", "/documents", {"documents": [{"id": f"x{i}", "text": "t"} for i in range(4)]}, 400,
     "too many documents"),
    ("POST", "/documents", {"documents": []}, 400, "no documents"),
    ("POST", "/documents", {"documents": [{"id": " ", "text": "t"}]}, 400, "no id"),
    ("POST", "/documents", {"documents": [{"text": "t"}]}, 400, "documents.0.id"),
    ("POST", "/documents", {"documents": [{"id": "x", "text": 3}]}, 400, "documents.0.text"),
    ("POST", "/documents", {"documents": [{"id": "d1", "text": "t"}]}, 409, "d1"),
    ("POST", "/documents", {"documents": [{"id": "y", "text": "t"}, {"id": "y", "text": "u"}]}, 409, "y"),
    ("POST", "/context", {"query": "heart", "budget": 0}, 400, "budget"),
    ("POST", "/context", {"query": "heart", "budget": 2001}, 400, "budget"),
    ("POST", "/context", {"query": "heart", "order": "middle"}, 400, "order"),
    ("POST", "/context", {"query": "heart", "max_overlap": 0}, 400, "max_overlap"),
    ("POST", "/context", {"query": ""}, 400, "empty"),
    ("POST", "/context", {"query": "heart", "k": 0}, 400, "k"),
    ("POST", "/context", {"query": "heart", "k": 51}, 400, "k"),
    ("POST", "/context", {"query": "heart", "max_overlap": 1.5}, 400, "max_overlap"),
    ("GET", "/documents/nope", None, 404, "nope"),
    ("DELETE", "/documents/nope", None, 404, "nope"),
    ("GET", "/nowhere", None, 404, "Not Found"),
    ("PUT", "/search", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), BAD_REQUESTS)
def test_bad_requests_get_a_json_error_that_teaches(client: TestClient, method: str, path: str, body: Any,
                                                    status: int, says: str) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error and "Traceback" not in response.text


def test_malformed_json_and_a_missing_content_type(client: TestClient) -> None:
    json_type = {"Content-Type": "application/json"}
    broken = client.post("/search", content=b'{"query": "heart", ', headers=json_type)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    form = client.post("/search", content=b"query=heart",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 400 and "Content-Type: application/json" in form.json()["error"]


def test_bodies_over_the_limit_get_413(client: TestClient) -> None:
    big = json.dumps({"query": "heart " * 1000}).encode()  # 6 kB > 4096 bytes
    declared = client.post("/search", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "4096 bytes" in declared.json()["error"]
    # no Content-Length: the bytes are counted as they stream in
    streamed = client.post("/search", content=iter([big[:3000], big[3000:]]),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/search", json={"query": "heart"}).status_code == 200  # the server is fine


def test_an_unexpected_error_is_500_with_the_traceback_only_in_the_log(
        client: TestClient, service: Service, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.live, "search", broken)
    with caplog.at_level(logging.ERROR, logger="pretriever.serve"):
        response = client.post("/search", json={"query": "heart"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (see the server log)"}
    assert "secret" not in response.text and "Traceback" not in response.text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


# -- API key ------------------------------------------------------------------------------------------

def test_api_key_is_required_and_compared_in_constant_time(service: Service,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with TestClient(create_app(service, api_key="s3cret")) as client:
        body = {"query": "heart"}
        missing = client.post("/search", json=body)
        assert missing.status_code == 401 and "API key" in missing.json()["error"]
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.post("/search", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        for headers, status in (({"X-API-Key": "s3cre"}, 401), ({"Authorization": "Basic s3cret"}, 401),
                                ({"Authorization": "Bearer s3cret"}, 200), ({"X-API-Key": "s3cret"}, 200)):
            assert client.post("/search", json=body, headers=headers).status_code == status
        assert client.get("/metrics").status_code == 401
        assert client.delete("/documents/d1").status_code == 401  # nothing changed without the key
        assert client.get("/health").status_code == 200  # open: a load balancer's probe
        assert client.get("/openapi.json").status_code == 200
        # a body over the limit without the key: 401, before a byte of it is read
        assert client.post("/search", content=b"x" * 10_000).status_code == 401
    assert b"s3cret" in compared and b"wrong" in compared
    assert len(service.live) == len(DOCS)


def test_an_empty_api_key_is_refused(service: Service) -> None:
    with pytest.raises(ConfigError, match="empty"):
        create_app(service, api_key="  ")


# -- health, metrics, docs --------------------------------------------------------------------------

def test_health(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health == {"status": "ok", "kind": "index.bm25", "documents": len(DOCS), "seq": 0,
                      "pending_updates": 0, "texts": True, "members": []}


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse_prometheus(text: str) -> dict[str, float]:
    """Every sample of the text exposition format, keyed by name{labels}; fails on a bad line."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        assert re.sub(r"_(bucket|sum|count)$", "", match[1]) in types, f"no TYPE for {match[1]}"
        samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


def test_metrics_are_prometheus_text_and_count_requests(client: TestClient) -> None:
    search = 'pretriever_requests_total{method="POST",endpoint="/search",code="200"}'
    client.post("/search", json={"query": "heart"})
    client.post("/search", json={"query": ""})
    client.get("/documents/nope")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    before = parse_prometheus(response.text)
    assert before[search] == 1
    assert before['pretriever_requests_total{method="POST",endpoint="/search",code="400"}'] == 1
    assert before['pretriever_requests_total{method="GET",endpoint="/documents/{doc_id}",code="404"}'] == 1
    assert before["pretriever_index_documents"] == len(DOCS) and before["pretriever_index_seq"] == 0
    assert "pretriever_index_pending_updates" in before
    client.post("/search", json={"query": "heart"})
    client.post("/documents", json={"documents": [{"id": "n1", "text": "new"}]})
    after = parse_prometheus(client.get("/metrics").text)
    assert after[search] == 2 and after["pretriever_index_documents"] == len(DOCS) + 1
    assert after["pretriever_index_seq"] == 1
    labels = 'method="POST",endpoint="/search"'
    bucket = f"pretriever_request_duration_seconds_bucket{{{labels}"
    buckets = [v for k, v in after.items() if k.startswith(bucket)]
    assert buckets == sorted(buckets) and buckets[-1] == 3  # cumulative; +Inf holds every request
    assert after[f"pretriever_request_duration_seconds_count{{{labels}}}"] == 3
    assert f'pretriever_request_duration_seconds_bucket{{{labels},le="+Inf"}}' in after


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = {"/search", "/documents", "/documents/{doc_id}", "/context", "/health", "/metrics"}
    assert paths <= set(spec["paths"])
    assert "results" in spec["components"]["schemas"]["SearchResponse"]["properties"]
    assert client.get("/docs").status_code == 200


# -- context -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [8, 20, 500])
def test_context_respects_the_budget_and_cites_its_passages(client: TestClient, budget: int) -> None:
    response = client.post("/context", json={"query": "heart sleep", "k": 5, "budget": budget})
    assert response.status_code == 200, response.text
    context = response.json()
    assert context["tokens"] == words(context["text"]) <= budget and context["citations"]
    for c in context["citations"]:
        assert context["text"][c["start"]:c["end"]].startswith(f"[{c['doc_id']}] ")
    ranked = client.post("/context", json={"query": "heart sleep", "budget": budget, "order": "rank"}).json()
    assert [c["rank"] for c in ranked["citations"]] == list(range(1, len(ranked["citations"]) + 1))


def test_context_with_the_bundled_tokenizer(service: Service) -> None:
    real = Service(service.live, limits=LIMITS)  # "minilm", loaded once
    context = real.context("heart disease", k=5, budget=30)
    assert 0 < context["tokens"] <= 30 and context["citations"][0]["doc_id"] == "d1"
    assert real._counter() is real._counter()


# -- the service on its own -----------------------------------------------------------------------------

def test_service_errors_are_domain_errors(service: Service) -> None:
    with pytest.raises(ConfigError, match="list of query texts"):
        service.search("heart")  # type: ignore[arg-type]
    with pytest.raises(DuplicateDocumentError):
        service.add([Document("d1", "again")])
    with pytest.raises(UnknownDocumentError):
        service.delete("nope")
    with pytest.raises(ConfigError, match="unknown field"):
        service.add([{"id": "z", "txt": "typo"}])
    with pytest.raises(ConfigError, match="positive integer"):
        Limits(max_k=0)


def test_queries_arriving_while_a_search_runs_are_searched_as_one_batch(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    queries = ["heart disease", "vitamin d", "sleep memory", "aspirin"]
    expected = [service.search([q], 3)[0] for q in queries]
    batched = Service(service.live, limits=LIMITS, tokenizer=words, max_batch_queries=8)
    calls: list[int] = []
    real = service.live.search
    first_running, release = threading.Event(), threading.Event()

    def counting(queries: dict[str, str], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(queries))
        if len(calls) == 1:  # hold the first search until the others have queued behind it
            first_running.set()
            release.wait(10)
        return real(queries, *args, **kwargs)

    monkeypatch.setattr(service.live, "search", counting)
    results: dict[int, Any] = {}

    def ask(i: int) -> None:
        try:
            results[i] = batched.search([queries[i]], 3)
        except Exception as exc:  # the batch's error reaches every request
            results[i] = exc

    threads = [threading.Thread(target=ask, args=(0,))]
    threads[0].start()
    assert first_running.wait(10)
    threads += [threading.Thread(target=ask, args=(i,)) for i in range(1, len(queries))]
    for t in threads[1:]:
        t.start()
    while sum(len(q) for q in batched._batcher._queued.values()) < len(queries) - 1:
        time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == [1, len(queries) - 1]  # the lone first query did not wait; the rest: one batch
    assert [results[i][0] for i in range(len(queries))] == expected

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("index gone")

    monkeypatch.setattr(service.live, "search", broken)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(isinstance(results[i], RuntimeError) for i in range(len(queries)))


def test_batching_can_be_switched_off(service: Service) -> None:
    plain = Service(service.live, limits=LIMITS, tokenizer=words, batching=False)
    assert plain._batcher is None
    assert plain.search(["heart disease", "sleep"], 2) == service.search(["heart disease", "sleep"], 2)
    with pytest.raises(ConfigError, match="max_batch_queries"):
        Service(service.live, max_batch_queries=0)


# -- CLI --------------------------------------------------------------------------------------------------

def test_serve_refuses_a_public_host_without_a_key(index_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(index_dir), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--api-key-file" in err and "--insecure" in err
    empty = tmp_path / "key"
    empty.write_text("\n  \nsecond line\n")
    assert main(["serve", str(index_dir), "--host", "0.0.0.0", "--api-key-file", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["serve", str(index_dir), "--api-key-file", str(tmp_path / "absent")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_serve_builds_the_app_and_releases_the_index(index_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(self: uvicorn.Server, sockets: Any = None) -> None:
        seen.update(host=self.config.host, port=self.config.port, app=self.config.app)

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    key = tmp_path / "key"
    key.write_text("  k3y  \n")
    assert main(["serve", str(index_dir), "--host", "0.0.0.0", "--port", "8123",
                 "--api-key-file", str(key)]) == 0
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8123
    with TestClient(seen["app"]) as client:  # the key is the stripped first line
        assert client.get("/metrics", headers={"X-API-Key": "k3y"}).status_code == 200
    from pretriever.retrieval.live import LiveIndex

    LiveIndex.open(index_dir).close()  # the writer lock was released


def test_serve_on_a_socket_releases_the_index_on_sigterm(index_dir: Path, corpus_file: Path) -> None:
    """A real server process (about 1 s): uvicorn re-raises SIGTERM after its graceful shutdown, so
    the index must be closed inside that shutdown."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    argv = ["serve", str(index_dir), "--port", str(port), "--corpus", str(corpus_file),
            "--log-level", "warning"]
    server = subprocess.Popen([sys.executable, "-m", "pretriever", *argv], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not answer within 30 s")
        assert health.json()["documents"] == len(DOCS)
        added = httpx.post(f"{url}/documents", json={"documents": [{"id": "n1", "text": "x"}]})
        assert added.json() == {"seq": 1, "added": 1}
    finally:
        server.send_signal(signal.SIGTERM)
        err = server.communicate(timeout=30)[1]
    assert f"at {url}  (API docs: {url}/docs)" in err
    assert "Traceback" not in err
    from pretriever.retrieval.live import LiveIndex

    with LiveIndex.open(index_dir) as live:  # the lock is free and the update is there
        assert "n1" in live and live.seq == 1


def test_context_cli_prints_the_text_then_the_citations(service: Service, index_dir: Path, corpus_file: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Beside a server (``service`` holds the writer lock): the CLI reads the index read-only."""
    import pretriever.retrieval.context as context_module

    monkeypatch.setattr(context_module, "token_counter", lambda tokenizer="minilm": words)
    argv = ["context", "--index", str(index_dir), "--corpus", str(corpus_file), "heart disease", "-k", "3"]
    assert main([*argv, "--budget", "100"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[d1] Statins statins reduce mortality") and "citations (" in out
    assert re.search(r"\[d1\]\s+rank 1\s+score \d+\.\d{4}\s+chars 0-\d+", out)
    assert main([*argv, "--json"]) == 0
    packed = json.loads(capsys.readouterr().out)
    assert packed["query"] == "heart disease" and packed["citations"][0]["doc_id"] == "d1"
    assert main([*argv, "--budget", "0"]) == 2
    assert "budget" in capsys.readouterr().err


# -- MCP ---------------------------------------------------------------------------------------------------

def test_mcp_tools_answer_as_the_service(service: Service) -> None:
    from mcp import Client

    from pretriever.serve.mcp import create_mcp

    async def session() -> dict[str, Any]:
        async with Client(create_mcp(service)) as client:
            tools = await client.list_tools()
            return {
                "tools": {t.name for t in tools.tools},
                "search": await client.call_tool("search", {"query": "heart disease", "k": 3}),
                "context": await client.call_tool("context", {"query": "heart disease", "budget": 40}),
                "document": await client.call_tool("get_document", {"id": "d2"}),
                "empty": await client.call_tool("search", {"query": " "}),
                "unknown": await client.call_tool("get_document", {"id": "nope"}),
            }

    answers = asyncio.run(session())
    assert answers["tools"] == {"search", "context", "get_document"}
    assert answers["search"].structured_content["result"] == service.search(["heart disease"], 3)[0]
    assert answers["context"].structured_content == service.context("heart disease", budget=40)
    assert answers["document"].structured_content == service.get("d2")
    assert answers["empty"].is_error and "empty" in answers["empty"].content[0].text
    assert answers["unknown"].is_error and "nope" in answers["unknown"].content[0].text
