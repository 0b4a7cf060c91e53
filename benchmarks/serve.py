"""`pretriever serve` under load, on 127.0.0.1 only: latency, throughput against in-process, lost
writes, and an update loop killed with SIGKILL.

    python benchmarks/serve.py [--dataset scifact] [--requests 2000] [--clients 16]
                               [--crash-trials 50] [--hybrid-crash-trials 10] [--work DIR] [--no-append]

Two indexes of the dataset, built once in --work and copied afresh for every phase: BM25, and the
hybrid pipeline (BM25 + dense MiniLM, exact, on the default backend: OpenVINO where installed),
min-max fused. Each phase starts `pretriever serve COPY --port P` as a subprocess (bound to
127.0.0.1) and waits for /health.

- search, 1 client: sequential /search requests (one test query each, k=10): latency p50/p95/p99;
- search, 16 clients: the same, 16 threads with keep-alive connections, for --requests requests:
  queries/s and latency; then, with the server stopped, 16 threads calling the same index
  in-process (``LiveIndex.search``) with the same queries: the ratio HTTP q/s / in-process q/s is
  the serving overhead (target >= 0.8). The load generator shares the 2 cores with the server.
- mixed, 16 clients: --requests requests, 90% /search, 10% updates (a client adds a new document, or
  deletes one it added before); every non-2xx answer or transport error counts as an error; then
  every acknowledged add must be returned by GET /documents/{id} with its text and every
  acknowledged delete must be a 404, checked on the running server, and again after a graceful
  restart (SIGTERM, start again).
- crash: a client sends updates one at a time (add 50%, delete 30%, upsert 20%) while the server is
  killed with SIGKILL at a random moment (0.1-1.5 s after it is ready); the folder, reopened, must
  hold exactly the acknowledged state, or that plus the one update in flight (sent, never
  acknowledged: the kill fell between its commit and its answer).

Every loop is bounded by a request or trial count and stops by itself. Unless --no-append the
section "Serving" of benchmarks/RESULTS.md is replaced (see _common.record_section).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine_line, record_section

from pretriever.data import load_dataset
from pretriever.retrieval.live import LiveIndex

K = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`pretriever serve FOLDER` in a subprocess on 127.0.0.1."""

    def __init__(self, folder: Path, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("pretriever")
        self.log = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                str(folder),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {log}")
            try:
                status, _ = request(self.connect(), "GET", "/health")
                if status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /health in 300 s; see {log}")

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=60)
        self.log.close()


def request(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    ctype = response.getheader("content-type", "")
    return response.status, json.loads(raw) if raw and "json" in ctype else raw


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    p = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def run_clients(clients: int, total: int, work: Any) -> tuple[float, list[Any]]:
    """``work(client, i, state)`` called ``total`` times over ``clients`` threads; returns the wall
    time and every call's result."""
    counter = iter(range(total))
    lock = threading.Lock()
    results: list[Any] = []

    def loop(client: int) -> None:
        state: dict[str, Any] = {}
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            out = work(client, i, state)
            with lock:
                results.append(out)
        if "conn" in state:
            state["conn"].close()

    threads = [threading.Thread(target=loop, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, results


def http_search(server: Server, queries: list[str]) -> Any:
    def work(client: int, i: int, state: dict[str, Any]) -> tuple[float, bool]:
        conn = state.setdefault("conn", server.connect())
        start = time.perf_counter()
        try:
            status, _ = request(conn, "POST", "/search", {"query": queries[i % len(queries)], "k": K})
        except OSError:
            state.pop("conn").close()
            return time.perf_counter() - start, False
        return time.perf_counter() - start, status == 200

    return work


def search_phase(folder: Path, work: Path, queries: list[str], clients: int, total: int,
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    server = Server(folder, work / "server.log", extra)
    try:
        _, _ = run_clients(1, 50, http_search(server, queries))  # warm-up: compiled model, caches
        wall1, one = run_clients(1, min(total, 500), http_search(server, queries))
        wall, many = run_clients(clients, total, http_search(server, queries))
    finally:
        server.stop()
    live = LiveIndex.open(folder, readonly=True)

    def in_process(client: int, i: int, state: dict[str, Any]) -> float:
        start = time.perf_counter()
        live.search({"q": queries[i % len(queries)]}, k=K)
        return time.perf_counter() - start

    run_clients(1, 50, in_process)
    wall_in, inproc = run_clients(clients, total, in_process)
    return {
        "one": (len(one) / wall1, *percentiles([t for t, _ in one])),
        "many": (len(many) / wall, *percentiles([t for t, _ in many])),
        "errors": sum(not ok for _, ok in one + many),
        "inprocess": (len(inproc) / wall_in, *percentiles(inproc)),
    }


def mixed_phase(
    folder: Path, work: Path, queries: list[str], texts: list[str], clients: int, total: int, seed: int
) -> dict[str, Any]:
    server = Server(folder, work / "server.log")
    acked_add: dict[str, str] = {}
    acked_delete: set[str] = set()
    lock = threading.Lock()

    def work_fn(client: int, i: int, state: dict[str, Any]) -> tuple[str, float, bool]:
        rng = state.setdefault("rng", random.Random(seed * 1000 + client))
        conn = state.setdefault("conn", server.connect())
        mine = state.setdefault("mine", [])
        start = time.perf_counter()
        try:
            if rng.random() < 0.9:
                status, _ = request(conn, "POST", "/search", {"query": queries[i % len(queries)], "k": K})
                return "search", time.perf_counter() - start, status == 200
            if mine and rng.random() < 0.5:
                victim = mine.pop(rng.randrange(len(mine)))
                status, _ = request(conn, "DELETE", f"/documents/{victim}")
                if status == 200:
                    with lock:
                        acked_delete.add(victim)
                        acked_add.pop(victim, None)
                return "delete", time.perf_counter() - start, status == 200
            doc_id = f"load-{client}-{i}"
            text = f"{texts[rng.randrange(len(texts))][:500]} uniqueterm{client}x{i}"
            status, _ = request(conn, "POST", "/documents", {"documents": [{"id": doc_id, "text": text}]})
            if status == 200:
                mine.append(doc_id)
                with lock:
                    acked_add[doc_id] = text
            return "add", time.perf_counter() - start, status == 200
        except OSError:
            state.pop("conn").close()
            return "error", time.perf_counter() - start, False

    try:
        wall, results = run_clients(clients, total, work_fn)
        lost_running = verify(server, acked_add, acked_delete)
    finally:
        server.stop()
    restarted = Server(folder, work / "server.log")
    try:
        lost_restart = verify(restarted, acked_add, acked_delete)
    finally:
        restarted.stop()
    searches = [t for kind, t, ok in results if kind == "search"]
    return {
        "wall": wall,
        "requests": len(results),
        "errors": sum(not ok for _, _, ok in results),
        "searches": len(searches),
        "search": percentiles(searches),
        "qps": len(results) / wall,
        "adds": sum(kind == "add" for kind, _, _ in results),
        "deletes": sum(kind == "delete" for kind, _, _ in results),
        "lost_running": lost_running,
        "lost_restart": lost_restart,
    }


def verify(server: Server, added: dict[str, str], deleted: set[str]) -> int:
    """Acknowledged writes not seen: adds that GET does not return with their text, deletes that it
    still returns."""
    conn = server.connect()
    lost = 0
    for doc_id, text in added.items():
        status, body = request(conn, "GET", f"/documents/{doc_id}")
        lost += status != 200 or body.get("text") != text
    for doc_id in deleted:
        status, _ = request(conn, "GET", f"/documents/{doc_id}")
        lost += status != 404
    conn.close()
    return lost


def contents(folder: Path) -> dict[str, str]:
    live = LiveIndex.open(folder, readonly=True)
    texts = live.texts()
    return {d: texts[d] for d in live.index.positions()}


def crash_trial(folder: Path, work: Path, seed: int) -> tuple[str, int]:
    """Kill the server with SIGKILL while one client sends updates; check the reopened folder."""
    rng = random.Random(seed)
    state = contents(folder)
    server = Server(folder, work / "crash.log")
    ids = sorted(state)
    log: list[tuple[str, dict[str, Any]]] = []  # ("begin"|"ack", op)
    stop = threading.Event()

    def client() -> None:
        conn = server.connect()
        step = 0
        while not stop.is_set():
            step += 1
            roll = rng.random()
            if roll < 0.5 or len(ids) < 3:
                op = {
                    "op": "add",
                    "id": f"crash-{seed}-{step}",
                    "text": f"crash {seed} {step} " * rng.randint(1, 30),
                }
                body: Any = {"documents": [{"id": op["id"], "text": op["text"]}]}
                call = ("POST", "/documents")
            elif roll < 0.8:
                op = {"op": "delete", "id": ids[rng.randrange(len(ids))]}
                body, call = None, ("DELETE", f"/documents/{op['id']}")
            else:
                op = {"op": "upsert", "id": ids[rng.randrange(len(ids))], "text": f"replaced {seed} {step}"}
                body = {"documents": [{"id": op["id"], "text": op["text"]}], "upsert": True}
                call = ("POST", "/documents")
            log.append(("begin", op))
            try:
                status, answer = request(conn, *call, body)
            except OSError:
                return
            if status != 200:
                raise RuntimeError(f"update refused: {status} {answer}")
            log.append(("ack", op))
            if op["op"] == "add":
                ids.append(op["id"])
            elif op["op"] == "delete":
                ids.remove(op["id"])

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(rng.uniform(0.1, 1.5))
    server.kill()
    stop.set()
    thread.join()
    in_flight = None
    acked = 0
    for event, op in log:
        if event == "begin":
            in_flight = op
            continue
        in_flight = None
        acked += 1
        if op["op"] == "delete":
            del state[op["id"]]
        else:
            state[op["id"]] = op["text"]
    found = contents(folder)
    if found == state:
        return "before", acked
    if in_flight is not None:
        after = dict(state)
        if in_flight["op"] == "delete":
            after.pop(in_flight["id"], None)
        else:
            after[in_flight["id"]] = in_flight["text"]
        if found == after:
            return "after", acked
    return "LOST", acked


def build_bases(dataset: str, work: Path) -> dict[str, Path]:
    from pretriever.indexes.bm25 import BM25Index
    from pretriever.indexes.dense import FlatIndex
    from pretriever.retrieval.pipeline import Pipeline

    bases = {"bm25": work / "base" / "bm25", "hybrid": work / "base" / "hybrid"}
    corpus = load_dataset(dataset).corpus
    if not (bases["bm25"] / "manifest.json").is_file():
        BM25Index(progress=False).build(corpus).save(bases["bm25"], overwrite=True)
    if not (bases["hybrid"] / "manifest.json").is_file():
        print("encoding the corpus for the hybrid (once; reused from --work afterwards)", flush=True)
        Pipeline({"bm25": BM25Index(progress=False), "dense": FlatIndex("minilm")}).build(corpus).save(
            bases["hybrid"], overwrite=True
        )
    return bases


def fresh_copy(base: Path, work: Path, name: str) -> Path:
    target = work / "runs" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--crash-trials", type=int, default=50)
    parser.add_argument("--hybrid-crash-trials", type=int, default=10)
    parser.add_argument("--work", default="/tmp/pretriever-serve-bench")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.dataset)
    queries = list(ds.split_queries("test").values())
    texts = ds.corpus.texts
    bases = build_bases(args.dataset, work)
    rows, mixed, crashes = {}, {}, {}
    for kind, base in bases.items():
        print(f"[{kind}] search load", flush=True)
        rows[kind] = search_phase(fresh_copy(base, work, kind), work, queries, args.clients, args.requests)
        print(f"[{kind}] {rows[kind]}", flush=True)
        print(f"[{kind}] mixed load", flush=True)
        mixed[kind] = mixed_phase(
            fresh_copy(base, work, kind), work, queries, texts, args.clients, args.requests, args.seed
        )
        print(f"[{kind}] {mixed[kind]}", flush=True)
        trials = args.crash_trials if kind == "bm25" else args.hybrid_crash_trials
        folder = fresh_copy(base, work, kind)
        outcomes = []
        for t in range(trials):
            outcomes.append(crash_trial(folder, work, args.seed * 10_000 + t))
            print(f"[{kind}] crash trial {t + 1}/{trials}: {outcomes[-1]}", flush=True)
        crashes[kind] = outcomes
    section = render(args, rows, mixed, crashes)
    print(section)
    if not args.no_append:
        record_section(section)


def render(
    args: argparse.Namespace,
    rows: dict[str, Any],
    mixed: dict[str, Any],
    crashes: dict[str, list[tuple[str, int]]],
) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"## Serving: `pretriever serve` under load on 127.0.0.1 ({stamp})",
        "",
        machine_line(("fastapi", "uvicorn", "bm25s", "openvino", "torch")),
        "",
        f"{args.dataset} ({len(load_dataset(args.dataset).corpus)} documents), test queries, k = {K}; "
        f"the load generator runs on the same {os.cpu_count()} cores as the server.",
        "",
        f"Search only (`/search`, one query per request; {args.clients} clients: {args.requests} requests):",
        "",
        "| index | 1 client q/s | p50 ms | p95 ms | p99 ms | 16 clients q/s | p50 ms | p95 ms | "
        "p99 ms | in-process 16 threads q/s | HTTP / in-process | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, r in rows.items():
        one, many, inproc = r["one"], r["many"], r["inprocess"]
        lines.append(
            f"| {kind} | {one[0]:.0f} | {one[1]:.1f} | {one[2]:.1f} | {one[3]:.1f} | {many[0]:.0f} | "
            f"{many[1]:.1f} | {many[2]:.1f} | {many[3]:.1f} | {inproc[0]:.0f} | "
            f"{many[0] / inproc[0]:.2f} | {r['errors']} |"
        )
    lines += [
        "",
        f"Mixed load ({args.clients} clients, {args.requests} requests: 90% `/search`, 10% "
        "`POST /documents` (one new document) or `DELETE /documents/{id}` (one the client added)):",
        "",
        "| index | requests/s | searches p50 / p95 / p99 ms | adds | deletes | errors | "
        "lost writes (running) | lost writes (after restart) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for kind, m in mixed.items():
        p = m["search"]
        lines.append(
            f"| {kind} | {m['qps']:.0f} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | {m['adds']} | "
            f"{m['deletes']} | {m['errors']} | {m['lost_running']} | {m['lost_restart']} |"
        )
    lines += [
        "",
        "Crash test (the server killed with SIGKILL 0.1-1.5 s after it is ready while one client "
        "sends updates; the reopened folder compared with the acknowledged state):",
        "",
        "| index | trials | acknowledged updates | = acknowledged | = acknowledged + the one in flight | "
        "anything else |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, outcomes in crashes.items():
        lines.append(
            f"| {kind} | {len(outcomes)} | {sum(a for _, a in outcomes)} | "
            f"{sum(o == 'before' for o, _ in outcomes)} | {sum(o == 'after' for o, _ in outcomes)} | "
            f"{sum(o == 'LOST' for o, _ in outcomes)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
