"""``pretriever serve DIR``: the HTTP API (or, with --mcp, MCP tools on stdio) over a live index."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pretriever.cli._common import add_texts_corpus_arg, info
from pretriever.errors import ConfigError, DataNotFoundError, MissingDependencyError

EPILOG = """\
examples:
  pretriever serve indexes/scifact-bm25 --corpus scifact
  curl -s localhost:8000/search -H 'Content-Type: application/json' -d '{"query": "statins", "k": 5}'
  curl -s localhost:8000/documents -H 'Content-Type: application/json' \\
       -d '{"documents": [{"id": "n1", "title": "New", "text": "..."}]}'
  curl -s -X DELETE localhost:8000/documents/n1
  curl -s localhost:8000/context -H 'Content-Type: application/json' -d '{"query": "statins", "budget": 512}'

  # on a network interface a key is needed: every request but /health sends it
  pretriever serve indexes/scifact-bm25 --host 0.0.0.0 --api-key-file ~/.pretriever-key
  curl -s HOST:8000/search -H 'Authorization: Bearer KEY' -H 'Content-Type: application/json' \\
       -d '{"queries": ["statins", "vitamin d"]}'

  # as MCP tools (search, context, get_document) for an agent, over stdin/stdout
  pretriever serve indexes/scifact-bm25 --corpus scifact --mcp

The API and its shapes: http://HOST:PORT/docs. Updates are durable when the request returns;
SIGTERM or Ctrl-C lets requests in flight finish, then releases the index.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve an index over HTTP (search, add, delete, context) or as MCP tools",
        description="Serve a saved index (or pipeline) over HTTP: search, live updates that survive a "
                    "restart, document reads, RAG context packing, /health and /metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("index", metavar="DIR", help="index or pipeline folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key-file", metavar="FILE",
                        help="file whose first line is the API key every request must send")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --host without an API key (anyone who can reach it "
                        "can change the index)")
    add_texts_corpus_arg(parser)
    parser.add_argument("--mcp", action="store_true", help="serve MCP tools on stdin/stdout instead of HTTP")
    parser.add_argument("--max-k", type=int, default=1000, help="most hits per query (default 1000)")
    parser.add_argument("--max-batch", type=int, default=64, help="most queries per request (default 64)")
    parser.add_argument("--max-documents", type=int, default=1000,
                        help="most documents per add request (default 1000)")
    parser.add_argument("--max-body-mb", type=float, default=8.0,
                        help="largest request body in MiB (default 8)")
    parser.add_argument("--no-batching", action="store_true",
                        help="search each request on its own (default: concurrent single-query requests "
                        "are searched as one batch, formed while the previous one runs; a lone request "
                        "never waits)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="server log level (default info)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    api_key = read_api_key(args.api_key_file) if args.api_key_file else None
    if not args.mcp:
        check_exposure(args.host, api_key is not None, args.insecure)
    if args.max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be positive, got {args.max_body_mb}")

    from pretriever.serve.service import Limits, Service

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    limits = Limits(max_k=args.max_k, max_batch=args.max_batch, max_documents=args.max_documents,
                    max_body_bytes=int(args.max_body_mb * 1024 * 1024))
    try:
        if args.mcp:
            from pretriever.serve.mcp import run_mcp
        else:
            import uvicorn

            from pretriever.serve.http import create_app
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "fastapi", extra="serve",
                                     feature="pretriever serve") from exc
    from pretriever.retrieval.live import LiveIndex

    # MCP tools only read: a reader follows the updates that a running HTTP server commits
    live = LiveIndex.open(args.index, corpus=corpus_file(args.corpus), readonly=args.mcp)
    try:
        service = Service(live, limits=limits, batching=not args.no_batching)
        service.warm_up()
        if args.mcp:
            info(f"MCP tools over {args.index} ({live.kind}, {len(live)} documents) on stdin/stdout")
            run_mcp(service)
            return 0
        url = f"http://{_url_host(args.host)}:{args.port}"
        config = uvicorn.Config(create_app(service, api_key=api_key), host=args.host, port=args.port,
                                log_level=args.log_level, timeout_graceful_shutdown=30)
        banner = f"serving {args.index} ({live.kind}, {len(live)} documents) at {url}  (API docs: {url}/docs)"
        _server(config, banner, on_shutdown=live.close).run()
        return 0
    finally:
        live.close()  # waits for an update or compaction in progress, then unlocks (again: harmless)


def corpus_file(name_or_path: str | None) -> Path | None:
    """``--corpus`` as a file: a corpus file, a BEIR folder (its corpus.jsonl or .tsv) or a dataset
    name under $PRETRIEVER_DATA (never downloaded here)."""
    if name_or_path is None:
        return None
    from pretriever.data.dataset import resolve_dataset

    found = resolve_dataset(name_or_path, download=False)
    if found.is_dir():
        for name in ("corpus.jsonl", "corpus.tsv"):
            if (found / name).is_file():
                return found / name
        raise DataNotFoundError(f"--corpus {name_or_path}: {found} has no corpus.jsonl or corpus.tsv")
    return found


def read_api_key(path: str | Path) -> str:
    """The first line of ``path``, stripped; an empty key is refused (it would let anyone in)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise ConfigError(f"--api-key-file {path}: no such file; write the key on its first line") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api-key-file {path}: cannot be read as text ({exc}); give a file whose "
                          "first line is the key") from exc
    key = lines[0].strip() if lines else ""
    if not key:
        raise ConfigError(f"--api-key-file {path}: the first line is empty; write the key there "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE)")
    return key


def check_exposure(host: str, has_key: bool, insecure: bool) -> None:
    """Refuse to listen beyond this machine without a key: anyone could then change the index."""
    if has_key or insecure or _is_loopback(host):
        return
    raise ConfigError(f"--host {host} listens beyond this machine, but no --api-key-file was given: "
                      "anyone who can reach it could add and delete documents. Give --api-key-file FILE "
                      "(first line: the key), or --insecure on a trusted network")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _server(config: Any, banner: str, on_shutdown: Callable[[], None]) -> Any:
    """A uvicorn server that says where it listens once the socket is bound (not before: the port
    may be taken), and runs ``on_shutdown`` once requests in flight have finished: on SIGTERM
    uvicorn re-raises the signal after its shutdown, so code after ``run()`` would never run."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                info(banner)

        async def shutdown(self, sockets: list | None = None) -> None:
            await super().shutdown(sockets)
            on_shutdown()

    return Server(config)
