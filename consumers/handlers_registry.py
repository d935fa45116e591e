"""Resolve each registered task type's handler, and refuse to start if one is missing."""

from __future__ import annotations

import importlib
import inspect

from consumers.worker import Handler
from contracts.registry import TASK_TYPES, TaskSpec, check_registry


class HandlerError(Exception):
    """A task type's handler cannot be found or is not an `async def`."""


def resolve_handler(spec: TaskSpec) -> Handler:
    module_name, _, function_name = spec.handler.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError) as error:
        raise HandlerError(f"{spec.name}: cannot import {module_name!r}: {error}") from error
    handler = getattr(module, function_name, None)
    if handler is None:
        raise HandlerError(f"{spec.name}: {module_name!r} has no {function_name!r}")
    if not inspect.iscoroutinefunction(handler):
        raise HandlerError(f"{spec.name}: {spec.handler} must be an async def function")
    parameters = list(inspect.signature(handler).parameters)
    if len(parameters) != 2:
        raise HandlerError(f"{spec.name}: {spec.handler} must take (payload, ctx)")
    resolved: Handler = handler
    return resolved


def resolve_all(specs: tuple[TaskSpec, ...] = TASK_TYPES) -> dict[str, Handler]:
    """Every type's handler, checked: a start-up error names each one that is wrong."""
    try:
        check_registry(specs)
    except ValueError as error:
        raise HandlerError(str(error)) from error
    return {spec.name: resolve_handler(spec) for spec in specs}
