"""What a handler is given besides its payload (who it is, the settings, its type's clients), and
what it may return."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeAlias

from typing_extensions import TypeVar

from infra.runtime.settings.worker import WorkerSettings

# What a handler may return: it becomes the status event's `result`. The worker checks it again
# at run time, since `Any` slips through.
JSON: TypeAlias = Mapping[str, "JSON"] | Sequence["JSON"] | str | int | float | bool | None

# Reports how far an attempt got: (fraction 0..1, optional message). The worker binds one to each
# attempt (`consumers.progress.ProgressReporter`).
ReportProgress: TypeAlias = Callable[[float, str | None], Awaitable[None]]

# What the task type's start-up hook made (e.g. an `httpx.AsyncClient`); None without a hook,
# so a handler without one writes a bare `TaskContext`.
C = TypeVar("C", default=None)


async def no_progress(fraction: float, message: str | None = None) -> None:
    """What `TaskContext.progress` does where no worker listens (a handler called directly)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress must be a fraction from 0 to 1, not {fraction!r}")


@dataclass(frozen=True, kw_only=True)
class TaskContext(Generic[C]):
    """Handlers use `task_id` and `attempt` to be idempotent: they may run more than once."""

    task_id: str
    task_type: str
    # Who owns the task (consumers.decode.ReceivedTask.tenant): whose secrets sign its webhook.
    tenant: str
    attempt: int
    run: int
    settings: WorkerSettings
    clients: C
    report_progress: ReportProgress = field(default=no_progress, repr=False)
    # In a workflow, the result of the step before this one; else None (docs/http-api.md,
    # Workflows).
    previous_result: JSON = None

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far this attempt got: `fraction` from 0 to 1, `message` a short note (cut
        to 200 characters). Returns at once: reports are throttled to a few a second per task,
        the latest wins, and a report that cannot be published never fails the task."""
        await self.report_progress(fraction, message)
