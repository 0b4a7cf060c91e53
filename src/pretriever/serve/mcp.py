"""The service as MCP tools (Model Context Protocol), so an agent can search the index itself.

Three tools over the same ``Service`` the HTTP app uses: ``search``, ``context`` (retrieved
passages packed into a cited context under a token budget) and ``get_document``. A ``Service``
error (an empty query, an unknown id) reaches the model as a tool error with the service's own
message, which says what to change; anything else stays in the server log. Sync tools run in a
worker thread (the SDK's ``anyio.to_thread``), so searches do not block the session.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from pretriever.errors import MissingDependencyError, PretrieverError
from pretriever.serve.service import Service

__all__ = ["create_mcp", "run_mcp"]

INSTRUCTIONS = ("Search a pretriever index. Use `context` to get the best passages for a question packed "
                "into one cited text for answering; `search` for ranked document ids; `get_document` "
                "to read one document.")


class SearchHit(TypedDict):
    rank: int
    doc_id: str
    score: float


class Citation(TypedDict):
    doc_id: str
    rank: int
    score: float
    start: int
    end: int


class PackedContext(TypedDict):
    text: str
    citations: list[Citation]
    tokens: int
    dropped_duplicates: list[str]
    over_budget: list[str]


class DocumentOut(TypedDict):
    id: str
    title: str
    text: str


def create_mcp(service: Service) -> Any:
    """An ``MCPServer`` named "pretriever" whose tools call ``service``."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as exc:
        raise MissingDependencyError("mcp", extra="serve", feature="the MCP server") from exc

    def call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PretrieverError as exc:  # the model reads this and can fix its call
            raise ToolError(str(exc)) from exc

    def search(query: str, k: int = 10) -> list[SearchHit]:
        """The k documents that best match the query, best first, with their scores."""
        return call(service.search, [query], k)[0]

    def context(query: str, k: int = 10, budget: int = 1024) -> PackedContext:
        """The best passages for the query packed into at most `budget` tokens, each prefixed with
        [doc_id]; citations give each passage's doc id, rank and span (text[start:end])."""
        return call(service.context, query, k, budget)

    def get_document(id: str) -> DocumentOut:  # the name the model sees
        """One document's id, title and text."""
        return call(service.get, id)

    server = MCPServer("pretriever", instructions=INSTRUCTIONS)
    for tool in (search, context, get_document):
        server.add_tool(tool)
    return server


def run_mcp(service: Service) -> None:
    """Serve the tools on stdin/stdout until the client closes them (blocks)."""
    create_mcp(service).run("stdio")
