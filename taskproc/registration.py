"""Declaring a task type: `@task_type("name", ...)` on its handler, in a task module.

The decorator makes the type's spec (its payload model is the handler's first parameter's
annotation) and its handler, and declares the spec to the registry (contracts.registry); the
type exists once its module is registered (an entry point in the group `taskproc.task_types`,
or TASK_MODULES). Every process imports the registered modules, the gateway too (for the payload
models): a library only the handler needs is imported inside the handler or its clients hook.
"""

from __future__ import annotations

import inspect
import sys
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


class TaskTypeOptions(TypedDict, total=False):
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
    name: str, *, clients: None = None, **options: Unpack[TaskTypeOptions],
) -> Callable[[Handle[P, None, R]], TaskHandler[P, None, R]]: ...


@overload
def task_type(
    name: str, *, clients: Clients[C], **options: Unpack[TaskTypeOptions],
) -> Callable[[Handle[P, C, R]], TaskHandler[P, C, R]]: ...


def task_type(
    name: str, *, clients: Clients[Any] | None = None, **options: Unpack[TaskTypeOptions],
) -> Callable[[Handle[Any, Any, Any]], TaskHandler[Any, Any, Any]]:
    """Declare the decorated `async def handler(payload: Model, ctx: TaskContext)` as the
    task type `name`, with `options` (timeout, attempts, backoff, prefetch, caps) and the
    `clients` hook that opens what its handler shares (once per worker process)."""

    # The module whose body applies the decorator declares the type, wherever the handler's
    # function was written (imported, or made by a factory).
    module: str = sys._getframe(1).f_globals.get("__name__", "?")

    def declared(handle: Handle[Any, Any, Any]) -> TaskHandler[Any, Any, Any]:
        spec = TaskSpec(name=name, payload=_payload_model(name, handle), **options)
        handler: TaskHandler[Any, Any, Any] = (TaskHandler(spec, handle) if clients is None
                                          else TaskHandler(spec, handle, clients=clients))
        declare(module, spec)
        _handlers[(name, module)] = handler
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
    """The annotation of the handler's first parameter: a pydantic model. Only that annotation is
    evaluated: the context's may name a clients type imported for type checking alone."""
    if not inspect.iscoroutinefunction(handle):
        raise HandlerError(f"{name}: {handle.__qualname__} must be an async def function")
    parameters = list(inspect.signature(handle).parameters.values())
    annotation = parameters[0].annotation if parameters else inspect.Parameter.empty
    if isinstance(annotation, str):
        try:
            # What typing.get_type_hints does, for this one annotation of the module's own source.
            annotation = eval(annotation, handle.__globals__)
        except NameError as error:
            raise HandlerError(f"{name}: the payload annotation of {handle.__qualname__} names "
                               f"what its module does not import: {error}") from error
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise HandlerError(f"{name}: the first parameter of {handle.__qualname__} must be "
                           "annotated with its payload's pydantic model")
    return annotation
