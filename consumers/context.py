"""What a handler is given besides its payload: who it is, and the shared clients it may use."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from infra.settings import Settings


@dataclass(frozen=True, kw_only=True)
class TaskContext:
    """Handlers use `task_id` and `attempt` to be idempotent: they may run more than once."""

    task_id: str
    task_type: str
    attempt: int
    run: int
    settings: Settings
    http: httpx.AsyncClient
