"""The shared webhook receiver, made to answer some paths slowly so tasks are in flight."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.receivers import WebhookReceiver


@dataclass
class SlowReceiver(WebhookReceiver):
    """`delays` maps a path prefix to seconds to wait before answering. The delivery is
    counted before the wait, as a real peer would act before its answer is lost."""

    delays: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        server = self._server

        def quiet(request: Any, client_address: Any) -> None:
            # A worker killed mid-request leaves a broken pipe: expected, not worth a traceback.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                type(server).handle_error(server, request, client_address)

        server.handle_error = quiet  # type: ignore[method-assign]

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        status = super()._record(method, path, headers, body)
        matches = [prefix for prefix in self.delays if path.startswith(prefix)]
        if matches:
            time.sleep(self.delays[max(matches, key=len)])
        return status

