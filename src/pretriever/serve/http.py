"""The HTTP layer: a FastAPI app over a ``Service``, and nothing the service does not already do.

What lives here is what only HTTP has: the request and response models (so ``/docs`` shows every
shape), the API key, the body size limit, request metrics, and the mapping of domain errors to
status codes, all in one place (``_STATUS``). Endpoints are plain ``def`` functions, so FastAPI
runs the blocking search and update work in its threadpool and the event loop stays free.

Errors are JSON ``{"error": message}``: 400 for anything wrong in the request (bad JSON, a field
of the wrong type, a limit passed), 401 without the right API key, 404 for an unknown document,
409 for a duplicate id or for texts the server was started without, 413 past the body limit,
500 ``internal error`` (the traceback goes to the server log only). ``/health``, ``/docs`` and
``/openapi.json`` stay open without the key, so load balancers and people can look; every other
path needs it.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any, Literal

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pretriever import __version__
from pretriever.errors import (
    ConfigError,
    DuplicateDocumentError,
    MissingDependencyError,
    PretrieverError,
    TextsUnavailableError,
    UnknownDocumentError,
)
from pretriever.serve.metrics import CONTENT_TYPE
from pretriever.serve.service import Service

__all__ = ["create_app"]

logger = logging.getLogger("pretriever.serve")

INTERNAL_ERROR = "internal error (see the server log)"
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""Paths answered without the API key: a health probe and the API's own description."""

_STATUS: tuple[tuple[type[PretrieverError], int], ...] = (
    (DuplicateDocumentError, 409),  # before ConfigError, its base
    (ConfigError, 400),
    (UnknownDocumentError, 404),
    (TextsUnavailableError, 409),  # started without the corpus: the message names --corpus
    (MissingDependencyError, 501),
)
"""Domain error -> status code; any other PretrieverError is the server's state (500, its message)."""


# -- request and response shapes (what /docs shows) --------------------------------------------

class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "k": "10" or a misspelled field is an error


class SearchRequest(_Request):
    """One query (``query``) or a batch (``queries``), never both."""

    query: str | None = Field(None, description="one query text", examples=["do statins reduce mortality?"])
    queries: list[str] | None = Field(None, description="several query texts, searched as one batch")
    k: int = Field(10, description="hits per query (1 to the server's max_k, default 1000)")
    member: str | None = Field(None, description="a pipeline member's own ranking (names in /health)")
    rerank: bool = Field(True, description="false: a pipeline's fused first stage, without its reranker")


class Hit(BaseModel):
    rank: int = Field(description="1-based; ties broken by doc_id")
    doc_id: str
    score: float


class SearchResponse(BaseModel):
    results: list[list[Hit]] = Field(description="one ranked list per query, in the order sent "
                                     "(one list for `query`)")


class DocumentIn(_Request):
    id: str = Field(description="unique id; an id already in the index is a 409 unless upsert")
    text: str = ""
    title: str = ""


class AddRequest(_Request):
    documents: list[DocumentIn] = Field(description="at most the server's max_documents (default 1000)")
    upsert: bool = Field(False, description="replace documents whose id is already in the index")


class AddResponse(BaseModel):
    seq: int = Field(description="number of this durable update; the documents are searchable and "
                     "survive a restart when this returns")
    added: int


class DeleteResponse(BaseModel):
    seq: int = Field(description="number of this durable update")


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str


class ContextRequest(_Request):
    query: str = Field(examples=["do statins reduce mortality?"])
    k: int = Field(10, description="passages retrieved before packing")
    budget: int = Field(1024, description="most tokens in the context (1 to the server's max_budget)")
    max_overlap: float = Field(0.8, description="word 3-gram Jaccard at which a passage counts as a "
                               "near-duplicate of a better one and is dropped")
    order: Literal["edges", "rank"] = Field("edges", description="edges: strongest passages at the start "
                                            "and end ('lost in the middle'); rank: in rank order")
    cite: bool = Field(True, description="prefix each passage with [doc_id]")


class Citation(BaseModel):
    doc_id: str
    rank: int
    score: float
    start: int = Field(description="the passage is text[start:end]")
    end: int


class ContextResponse(BaseModel):
    text: str
    citations: list[Citation] = Field(description="in text order")
    tokens: int
    dropped_duplicates: list[str]
    over_budget: list[str]


class HealthResponse(BaseModel):
    status: str
    kind: str = Field(description="the index kind, e.g. index.bm25 or index.pipeline")
    documents: int
    seq: int = Field(description="number of the last applied durable update (0 = none)")
    pending_updates: int
    texts: bool = Field(description="whether document texts are loaded (GET /documents and /context)")
    members: list[str] = Field(description="a pipeline's member names (for search's `member`)")


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong and what to do")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the request is malformed or past a limit"},
    413: {"model": ErrorResponse, "description": "the body is larger than the server's limit"},
}
_UNAUTHORIZED = (401, "missing or wrong API key")
_DUPLICATE = (409, "an id is already in the index (upsert replaces it)")
_UNKNOWN = (404, "no document with this id")
_NO_TEXTS = (409, "the server has no document texts: restart it with --corpus")


# -- the app ------------------------------------------------------------------------------------

def create_app(service: Service, *, api_key: str | None = None) -> FastAPI:
    """The HTTP API over ``service``; with ``api_key`` every path but /health and the docs needs
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    if api_key is not None and not api_key.strip():
        raise ConfigError("the API key is empty; give a non-empty key or none")
    app = FastAPI(
        title="pretriever",
        version=__version__,
        description="Search, update and read a live pretriever index; pack retrieved passages into a "
                    "cited context for a language model. Errors are `{\"error\": message}`.",
    )
    # documents the key in /docs (the Authorize button); the check itself is _Guard's. Routes sit on
    # the app itself, not an included router, which _Observe's route matching cannot see into.
    security = [Security(HTTPBearer(auto_error=False)), Security(APIKeyHeader(name="X-API-Key",
                                                                              auto_error=False))]
    keyed: dict[str, Any] = {"dependencies": security if api_key else []}

    def errors(*extra: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
        extra = (_UNAUTHORIZED, *extra) if api_key else extra
        return {**_ERRORS, **{code: {"model": ErrorResponse, "description": text} for code, text in extra}}

    @app.post("/search", response_model=SearchResponse, summary="Search one query or a batch",
              responses=errors(), **keyed)
    def search(body: SearchRequest) -> Response:
        if (body.query is None) == (body.queries is None):
            raise ConfigError("give either 'query' (one text) or 'queries' (a list of texts), not "
                              + ("both" if body.query is not None else "neither"))
        queries = [body.query] if body.query is not None else body.queries
        results = service.search(queries, body.k, member=body.member, rerank=body.rerank)
        return JSONResponse({"results": results})

    @app.post("/documents", response_model=AddResponse, summary="Add (or upsert) documents",
              responses=errors(_DUPLICATE), **keyed)
    def add(body: AddRequest) -> Response:
        documents = [d.model_dump() for d in body.documents]
        return JSONResponse(service.add(documents, upsert=body.upsert))

    @app.delete("/documents/{doc_id:path}", response_model=DeleteResponse, summary="Delete a document",
                responses=errors(_UNKNOWN), **keyed)
    def delete(doc_id: str) -> Response:
        return JSONResponse(service.delete(doc_id))

    @app.get("/documents/{doc_id:path}", response_model=DocumentOut, summary="Read a document",
             responses=errors(_UNKNOWN, _NO_TEXTS), **keyed)
    def get(doc_id: str) -> Response:
        return JSONResponse(service.get(doc_id))

    @app.post("/context", response_model=ContextResponse, summary="Retrieve and pack a cited context",
              responses=errors(_NO_TEXTS), **keyed)
    def context(body: ContextRequest) -> Response:
        return JSONResponse(service.context(body.query, body.k, body.budget, max_overlap=body.max_overlap,
                                            order=body.order, cite=body.cite))

    @app.get("/metrics", summary="Prometheus metrics (text format 0.0.4)", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}, **errors()}, **keyed)
    def metrics() -> Response:
        return Response(service.metrics_text(), media_type=CONTENT_TYPE)

    @app.get("/health", response_model=HealthResponse, summary="Index kind, size and last update (no key)")
    def health() -> Response:
        return JSONResponse(service.health())

    def openapi() -> dict[str, Any]:
        """FastAPI's schema without the 422 it documents by default: errors here are 400."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(PretrieverError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(_Guard, api_key=api_key, max_body_bytes=service.limits.max_body_bytes)
    app.add_middleware(_Observe, service=service)  # outermost: counts 401s and 413s too
    return app


# -- errors, in one place -------------------------------------------------------------------------

def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    if status == 500:  # the server's state (a corrupt log entry, say): its message teaches
        logger.error("%s %s: %s", request.method, request.url.path, exc)
    return _error(status, str(exc))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """400, not FastAPI's 422: one status for every malformed request, and a message that names
    the field and never echoes the input (it may be megabytes)."""
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        if error.get("type") == "json_invalid":
            cause = error.get("ctx", {}).get("error", "decode error")
            problems.append(f"the body is not valid JSON: {cause} at character {where}")
        elif where == "body" and "json" not in content_type:
            problems.append("the body must be a JSON object sent with 'Content-Type: application/json' "
                            f"(got {content_type or 'no content type'})")
        elif where == "body" and error.get("type") == "missing":
            problems.append("the request has no body: send a JSON object (the shapes are at /docs)")
        else:
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return _error(400, "; ".join(dict.fromkeys(problems)) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


# -- middleware -------------------------------------------------------------------------------------

class _Guard:
    """The API key, then the body size: checked before the app reads anything.

    The body is read here, counting bytes, and handed to the app whole: a Content-Length over the
    limit is refused without reading, a chunked body as soon as it passes it.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.api_key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            await _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY' or "
                         "'X-API-Key: KEY'", {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        too_large = _error(413, f"the request body is larger than {self.max_body_bytes} bytes; send fewer "
                           "documents or queries per request")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _error(400, f"invalid Content-Length {length!r}")(scope, receive, send)
                return
            if int(length) > self.max_body_bytes:
                await too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, headers: Headers) -> bool:
        assert self.api_key is not None
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        candidates = [headers.get("x-api-key", ""), bearer.strip() if scheme.lower() == "bearer" else ""]
        # every candidate compared, in constant time, so the timing tells nothing about the key
        matches = [hmac.compare_digest(c.encode(), self.api_key) for c in candidates]
        return any(matches)


class _Observe:
    """Request counts and latency by route, and the last word on errors: anything unexpected is
    logged with its traceback and answered 500 ``internal error``, never with the traceback."""

    def __init__(self, app: ASGIApp, *, service: Service) -> None:
        self.app = app
        self.metrics = service.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self._endpoint(scope)
        start = time.perf_counter()
        status = 499  # the client left before an answer
        started = False

        async def watch(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            logger.exception("internal error answering %s %s", scope.get("method"), scope.get("path"))
            status = 500
            if started:
                raise
            await _error(500, INTERNAL_ERROR)(scope, receive, send)
        finally:
            self.metrics.observe(scope.get("method", ""), endpoint, status, time.perf_counter() - start)

    def _endpoint(self, scope: Scope) -> str:
        """The route template the request goes to (few labels), or "unmatched"."""
        app = scope.get("app")
        for route in getattr(getattr(app, "router", None), "routes", ()):
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return getattr(route, "path_format", "unmatched")  # "/documents/{doc_id}"
        return "unmatched"
