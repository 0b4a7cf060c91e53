"""Serving a live index: a service that knows nothing of HTTP, and thin adapters over it.

    service.py   ``Service`` and its ``Limits``: search, add, delete, get, context, health,
                 metrics over a ``LiveIndex``; every check on user input raises ``ConfigError``
    metrics.py   request counters and latency histograms, written as Prometheus text by hand
    http.py      ``create_app(service)``: a FastAPI app (``pretriever serve DIR``)
    mcp.py       ``create_mcp(service)`` / ``run_mcp(service)``: the same service as MCP tools
                 on stdio (``pretriever serve DIR --mcp``)

Nothing heavy is imported here: FastAPI and the MCP SDK are the ``serve`` extra
(``pip install 'pretriever[serve]'``) and are imported only by the modules that need them.
"""
