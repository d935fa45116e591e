"""A task type's handler as an object: its spec, its `async def`, and its clients' start-up hook.

`taskproc.task_type` makes one from a decorated function; mypy checks that the function takes
the spec's payload type and a `TaskContext` of what the hook yields.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, Protocol, TypeAlias, cast, overload

from pydantic import BaseModel
from typing_extensions import TypeVar

from contracts.registry import TaskSpec
from infra.runtime.settings.worker import WorkerSettings
from taskproc.context import JSON, ReportProgress, TaskContext

P = TypeVar("P", bound=BaseModel)
C = TypeVar("C")
# What the handler returns, kept so that calling a decorated handler in a test gives its type.
R = TypeVar("R", bound=JSON, default=JSON)

Handle: TypeAlias = Callable[[P, TaskContext[C]], Awaitable[R]]
# The start-up hook: opens the type's own clients for the life of the process.
Clients: TypeAlias = Callable[[WorkerSettings], AbstractAsyncContextManager[C]]


class TaskAttempt(Protocol):
    """What the worker knows of the attempt it hands a handler (consumers.decode.ReceivedTask)."""

    @property
    def task_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def run(self) -> int: ...
    @property
    def tenant(self) -> str: ...
    @property
    def payload(self) -> BaseModel: ...
    @property
    def previous_result(self) -> Any: ...


# What the worker calls: one attempt, run with the clients already open, and where its
# handler's progress reports go.
RunTask: TypeAlias = Callable[[TaskAttempt, ReportProgress], Awaitable[JSON]]


class HandlerError(Exception):
    """A handler that cannot be one (not an `async def`), or a type without a handler."""


class TaskHandler(Generic[P, C, R]):
    """Binds a spec to the function that runs its tasks, and to the hook that opens its clients.

    Calling it calls the function, so a decorated handler stays callable in its own tests."""

    @overload
    def __init__(
        self: TaskHandler[P, None, R], spec: TaskSpec[P], handle: Handle[P, None, R]
    ) -> None:
        ...

    @overload
    def __init__(
        self, spec: TaskSpec[P], handle: Handle[P, C, R], *, clients: Clients[C]
    ) -> None:
        ...

    def __init__(
        self, spec: TaskSpec[P], handle: Handle[P, Any, R], *,
        clients: Clients[Any] | None = None,
    ) -> None:
        # Checked here too, so a sync function fails at import even where mypy does not run.
        if not inspect.iscoroutinefunction(handle):
            raise HandlerError(f"{spec.name}: {_name(handle)} must be an async def function")
        self.spec = spec
        self.handle: Handle[P, C, R] = handle
        self._clients = cast(Clients[C], clients or _no_clients)

    def __repr__(self) -> str:
        return f"TaskHandler({self.spec.name!r}, {_name(self.handle)})"

    def __call__(self, payload: P, ctx: TaskContext[C]) -> Awaitable[R]:
        return self.handle(payload, ctx)

    @asynccontextmanager
    async def started(self, settings: WorkerSettings) -> AsyncIterator[RunTask]:
        """Open this type's clients; yield the function that runs one task with them."""
        async with self._clients(settings) as clients:

            async def run(task: TaskAttempt, report_progress: ReportProgress) -> JSON:
                payload = task.payload
                # decode() validated it with this spec's model; this narrows it for mypy.
                if not isinstance(payload, self.spec.payload):
                    raise TypeError(f"{self.spec.name} handler given a {type(payload).__name__}")
                context = TaskContext(task_id=task.task_id, task_type=self.spec.name,
                                      tenant=task.tenant,
                                      attempt=task.attempt, run=task.run, settings=settings,
                                      clients=clients, report_progress=report_progress,
                                      previous_result=task.previous_result)
                return await self.handle(payload, context)

            yield run


@asynccontextmanager
async def _no_clients(settings: WorkerSettings) -> AsyncIterator[None]:
    yield None


def _name(function: object) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', function)}"
