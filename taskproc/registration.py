"""Declaring a task type: `@task_type("name", ...)` on its handler, in a task module.

The decorator makes the type's spec (its payload model is the handler's first parameter's
annotation) and its handler, and declares the spec to the registry (contracts.registry); the
type exists once its module is registered (an entry point in the group `taskproc.task_types`,
or TASK_MODULES). Every process imports the registered modules, the gateway too (for the payload
models): a library only the handler needs is imported inside the handler or its clients hook.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypedDict, overload

from pydantic import BaseModel
from typing_extensions import TypeVar, Unpack

from contracts.registry import TaskSpec, declare, task_types
from taskproc.context import JSON
from taskproc.handler import Clients, Handle, HandlerError, TaskHandler

P = TypeVar("P", bound=BaseModel)
C = TypeVar("C")
R = TypeVar("R", bound=JSON)


class TaskOptions(TypedDict, total=False):
    """A type's own defaults and caps (contracts.registry.TaskSpec says what each means)."""

    max_attempts: int
    timeout_s: float
    retry_base_s: float
    retry_cap_s: float
    delivery_limit: int
    prefetch: int
    timeout_cap_s: float
    max_attempts_cap: int
    not_before_cap_s: float


# Every handler declared so far, by task type name and module.
_handlers: dict[tuple[str, str], TaskHandler[Any, Any, Any]] = {}


@overload
def task_type(
    name: str, *, clients: None = None, **options: Unpack[TaskOptions],
) -> Callable[[Handle[P, None, R]], TaskHandler[P, None, R]]: ...


@overload
def task_type(
    name: str, *, clients: Clients[C], **options: Unpack[TaskOptions],
) -> Callable[[Handle[P, C, R]], TaskHandler[P, C, R]]: ...


def task_type(
    name: str, *, clients: Clients[Any] | None = None, **options: Unpack[TaskOptions],
) -> Callable[[Handle[Any, Any, Any]], TaskHandler[Any, Any, Any]]:
    """Declare the decorated `async def handler(payload: Model, ctx: TaskContext)` as the
    task type `name`, with `options` (timeout, attempts, backoff, prefetch, caps) and the
    `clients` hook that opens what its handler shares (once per worker process)."""

    def declared(handle: Handle[Any, Any, Any]) -> TaskHandler[Any, Any, Any]:
        spec = TaskSpec(name=name, payload=_payload_model(name, handle), **options)
        handler: TaskHandler[Any, Any, Any] = (TaskHandler(spec, handle) if clients is None
                                          else TaskHandler(spec, handle, clients=clients))
        declare(handle.__module__, spec)
        _handlers[(name, handle.__module__)] = handler
        return handler

    return declared


def handler_for(name: str) -> TaskHandler[Any, Any, Any]:
    """The handler of the registered task type `name`; HandlerError if it has none."""
    for spec in task_types():
        if spec.name != name:
            continue
        for (declared_name, _), handler in _handlers.items():
            if declared_name == name and handler.spec is spec:
                return handler
    raise HandlerError(f"no handler for the task type {name!r}")


def _payload_model(name: str, handle: Callable[..., Any]) -> type[BaseModel]:
    """The annotation of the handler's first parameter: a pydantic model."""
    if not inspect.iscoroutinefunction(handle):
        raise HandlerError(f"{name}: {handle.__qualname__} must be an async def function")
    parameters = list(inspect.signature(handle).parameters)
    hints = typing.get_type_hints(handle) if parameters else {}
    model = hints.get(parameters[0]) if parameters else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise HandlerError(f"{name}: the first parameter of {handle.__qualname__} must be "
                           "annotated with its payload's pydantic model")
    return model
