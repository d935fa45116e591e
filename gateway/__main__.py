"""`python -m gateway` serves the HTTP API with uvicorn on GATEWAY_HOST:GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from infra.logging import configure_logging
from infra.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings, "gateway")
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_config=None, access_log=True)


if __name__ == "__main__":
    main()
