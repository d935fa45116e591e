"""`taskproc gateway`, also `python -m gateway`: serve the HTTP API with uvicorn on
GATEWAY_HOST:GATEWAY_PORT, in GATEWAY_WORKERS processes."""

from __future__ import annotations

import click
import uvicorn

from gateway.app import create_app
from infra.observability.logging import configure_logging
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.gateway import GatewaySettings


def main() -> None:
    """Serve the HTTP API until SIGTERM."""
    settings = process_settings(GatewaySettings)
    configure_logging(settings, "gateway")
    several = settings.gateway_workers > 1
    # Several worker processes each build their own app (and clients) from the environment.
    uvicorn.run(
        "gateway.app:create_app_from_environment" if several else create_app(settings),
        factory=several, workers=settings.gateway_workers if several else None,
        host=settings.gateway_host, port=settings.gateway_port, log_config=None,
        access_log=settings.gateway_access_log, loop="uvloop", http="httptools",
    )


@click.command("gateway")
def command() -> None:
    """Serve the HTTP API on GATEWAY_HOST:GATEWAY_PORT."""
    main()
