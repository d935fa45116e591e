"""A task type's handler as an object: its spec, its `async def`, and its clients' start-up hook.

`TaskHandler(WEBHOOK, call_webhook, clients=http_client)` is checked by mypy: the function must
take the spec's payload type and a `TaskContext` of what the hook yields. `check_handlers` is the
start-up check that every registered type has exactly one handler.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, TypeAlias, TypeVar, cast, overload

from consumers.context import JSON, ReportProgress, TaskContext
from consumers.decode import ReceivedTask
from contracts.payloads import Payload
from contracts.registry import TaskSpec, check_registry
from infra.runtime.settings.worker import WorkerSettings

P = TypeVar("P", bound=Payload)
C = TypeVar("C")

Handle: TypeAlias = Callable[[P, TaskContext[C]], Awaitable[JSON]]
# The start-up hook: opens the type's own clients for the life of the process.
Clients: TypeAlias = Callable[[WorkerSettings], AbstractAsyncContextManager[C]]
# What the worker calls: one task, run with the clients already open, and where its handler's
# progress reports go.
RunTask: TypeAlias = Callable[[ReceivedTask, ReportProgress], Awaitable[JSON]]


class HandlerError(Exception):
    """The handlers do not match the registered task types, or one is not an `async def`."""


class TaskHandler(Generic[P, C]):
    """Binds a spec to the function that runs its tasks, and to the hook that opens its clients."""

    @overload
    def __init__(self: TaskHandler[P, None], spec: TaskSpec[P], handle: Handle[P, None]) -> None:
        ...

    @overload
    def __init__(
        self, spec: TaskSpec[P], handle: Handle[P, C], *, clients: Clients[C]
    ) -> None:
        ...

    def __init__(
        self, spec: TaskSpec[P], handle: Handle[P, Any], *, clients: Clients[Any] | None = None
    ) -> None:
        # Checked here too, so a sync function fails at import even where mypy does not run.
        if not inspect.iscoroutinefunction(handle):
            raise HandlerError(f"{spec.name}: {_name(handle)} must be an async def function")
        self.spec = spec
        self.handle: Handle[P, C] = handle
        self._clients = cast(Clients[C], clients or _no_clients)

    def __repr__(self) -> str:
        return f"TaskHandler({self.spec.name!r}, {_name(self.handle)})"

    @asynccontextmanager
    async def started(self, settings: WorkerSettings) -> AsyncIterator[RunTask]:
        """Open this type's clients; yield the function that runs one task with them."""
        async with self._clients(settings) as clients:

            async def run(task: ReceivedTask, report_progress: ReportProgress) -> JSON:
                payload = task.payload
                # decode() validated it with this spec's model; this narrows it for mypy.
                if not isinstance(payload, self.spec.payload):
                    raise TypeError(f"{self.spec.name} handler given a {type(payload).__name__}")
                context = TaskContext(task_id=task.task_id, task_type=self.spec.name,
                                      tenant=task.tenant, attempt=task.attempt, run=task.run,
                                      settings=settings, clients=clients,
                                      report_progress=report_progress,
                                      previous_result=task.previous_result)
                return await self.handle(payload, context)

            yield run


def check_handlers(
    specs: Sequence[TaskSpec], handlers: Sequence[TaskHandler[Any, Any]]
) -> dict[str, TaskHandler[Any, Any]]:
    """Each spec's one handler by type name; HandlerError naming every type that is wrong.

    Wrong is: a type registered twice, a type without a handler or with two, a handler for a
    type that is not registered, or one bound to a spec that differs from the registered one.
    """
    try:
        check_registry(tuple(specs))
    except ValueError as error:
        raise HandlerError(str(error)) from error
    registered = {spec.name: spec for spec in specs}
    bound: dict[str, list[TaskHandler[Any, Any]]] = {}
    for handler in handlers:
        bound.setdefault(handler.spec.name, []).append(handler)
    problems = [
        _listing("no handler for", [name for name in registered if name not in bound]),
        _listing("more than one handler for",
                 [name for name, found in bound.items() if len(found) > 1]),
        _listing("handlers for unregistered task types",
                 [name for name in bound if name not in registered]),
        _listing("handlers bound to a spec that differs from the registered one", [
            name for name, found in bound.items()
            if name in registered and any(h.spec != registered[name] for h in found)
        ]),
    ]
    if any(problems):
        raise HandlerError("; ".join(problem for problem in problems if problem))
    return {name: bound[name][0] for name in registered}


@asynccontextmanager
async def _no_clients(settings: WorkerSettings) -> AsyncIterator[None]:
    yield None


def _listing(what: str, names: list[str]) -> str:
    return f"{what}: {', '.join(sorted(names))}" if names else ""


def _name(function: object) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', function)}"
