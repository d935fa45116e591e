"""`GET /metrics`: the Prometheus metrics of this gateway process, or of all of them."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response


async def metrics(request: Request) -> Response:
    """The registry in the text format; open, as a scraper has no API key."""
    # With several uvicorn processes each has its own counters: PROMETHEUS_MULTIPROC_DIR makes
    # them share files, and any process can then answer for all of them.
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
