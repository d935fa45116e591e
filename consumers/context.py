"""What a handler is given besides its payload (who it is, the settings, its type's clients), and
what it may return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias

from typing_extensions import TypeVar

from infra.settings import Settings

# What a handler may return: it becomes the status event's `result`. The worker checks it again
# at run time, since `Any` slips through.
JSON: TypeAlias = Mapping[str, "JSON"] | Sequence["JSON"] | str | int | float | bool | None

# What the task type's start-up hook made (e.g. an `httpx.AsyncClient`); None without a hook,
# so a handler without one writes a bare `TaskContext`.
C = TypeVar("C", default=None)


@dataclass(frozen=True, kw_only=True)
class TaskContext(Generic[C]):
    """Handlers use `task_id` and `attempt` to be idempotent: they may run more than once."""

    task_id: str
    task_type: str
    attempt: int
    run: int
    settings: Settings
    clients: C
