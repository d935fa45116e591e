"""The one place that knows the task types: name, payload model, limits and backoff.

A task module declares its types with `taskproc.task_type`; the registered modules are those
named by installed packages' entry points (group `taskproc.task_types`) and by TASK_MODULES,
less the types in DISABLED_TASK_TYPES (docs/task-types.md). This package names no handler.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic

from pydantic import BaseModel
from typing_extensions import TypeVar

from contracts.limits import DAY_S, TaskLimits
from contracts.names import QUARANTINE_EXCHANGE, SERVICE_QUEUES, task_exchange

# A type's name goes into its queues' names (`tasks.<name>.retry.<tier>s`, its control queues):
# this bound keeps every one of them within AMQP's 255 bytes.
MAX_NAME_LENGTH = 100

# Covariant, so a spec of one payload type is a spec of `BaseModel`; a bare `TaskSpec` means
# that.
P_co = TypeVar("P_co", bound=BaseModel, covariant=True, default=BaseModel)


@dataclass(frozen=True, kw_only=True)
class TaskSpec(Generic[P_co]):
    """A task type; its payload type is the type parameter, so a handler's is checked by mypy."""

    name: str
    payload: type[P_co]
    max_attempts: int = 5
    timeout_s: float = 30.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 120.0
    # Deliveries before RabbitMQ dead-letters a message that keeps killing its consumer.
    # Each requeue counts on RabbitMQ 3.x, graceful shutdowns included, so leave headroom.
    delivery_limit: int = 10
    prefetch: int = 16
    # The most a publisher may ask for (an operator may change them: TASK_LIMITS); above a cap
    # the gateway answers 422 and the worker quarantines the message as `rejected`.
    timeout_cap_s: float = 300.0
    max_attempts_cap: int = 20
    not_before_cap_s: float = 30 * DAY_S

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"task type {self.name!r} must be a Python identifier")
        if len(self.name) > MAX_NAME_LENGTH:
            raise ValueError(f"task type {self.name[:20]!r}...: longer than {MAX_NAME_LENGTH} "
                             "characters (its queue names must stay within AMQP's 255 bytes)")
        if task_exchange(self.name) in (*SERVICE_QUEUES, QUARANTINE_EXCHANGE):
            raise ValueError(f"task type {self.name!r}: its queue would be the service's own "
                             f"{task_exchange(self.name)}")
        if self.timeout_s > self.timeout_cap_s or self.max_attempts > self.max_attempts_cap:
            raise ValueError(f"task type {self.name!r}: a default above its cap")

    @property
    def limits(self) -> TaskLimits:
        """The caps this type ships with, before an operator's overrides."""
        return TaskLimits(timeout_s=self.timeout_cap_s, max_attempts=self.max_attempts_cap,
                          not_before_s=self.not_before_cap_s)

    def retry_delay_s(
        self, attempt: int, rng: random.Random | None = None, *, base_s: float | None = None
    ) -> float:
        """Exponential backoff with jitter in its upper half, capped at `retry_cap_s`.

        `base_s` overrides the type's `retry_base_s` for one task.
        """
        base = self.retry_base_s if base_s is None else base_s
        ceiling = min(self.retry_cap_s, base * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(ceiling / 2, ceiling)


# The entry-point group a package names its task modules in, and the environment variables
# that add modules and leave types out.
ENTRY_POINT_GROUP = "taskproc.task_types"
TASK_MODULES = "TASK_MODULES"
DISABLED_TASK_TYPES = "DISABLED_TASK_TYPES"


class RegistryError(Exception):
    """The registered task modules cannot be loaded, or declare a type twice."""


class UnknownTaskType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task type {name!r}; known: {', '.join(task_type_names())}")
        self.name = name


# Every spec declared so far, by the module that declared it, in declaration order.
_declared: dict[str, list[TaskSpec]] = {}
_loaded: tuple[TaskSpec, ...] | None = None


def declare(module: str, spec: TaskSpec) -> None:
    """Note that `module` declares `spec` (taskproc.task_type calls it as the module is
    imported). A declaration only counts once its module is registered."""
    _declared.setdefault(module, []).append(spec)


def task_types() -> tuple[TaskSpec, ...]:
    """The registered task types, loaded on the first call (see the module's docstring)."""
    global _loaded
    if _loaded is None:
        _loaded = load(registered_modules(), disabled=_names(os.environ.get(DISABLED_TASK_TYPES)))
    return _loaded


def registered_modules() -> list[str]:
    """The task modules to load: those named by installed packages' entry points (by entry
    point name), then those in TASK_MODULES, in their order."""
    named = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)
    return list(dict.fromkeys([*(point.value for point in named),
                               *_names(os.environ.get(TASK_MODULES))]))


def load(modules: Iterable[str], *, disabled: Iterable[str] = ()) -> tuple[TaskSpec, ...]:
    """Import `modules` and return the types they declare (a module also declares the types of
    its own submodules), leaving out `disabled`."""
    modules = list(modules)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise RegistryError(f"task module {module!r} cannot be imported: {error}") from error
    found: dict[str, tuple[str, TaskSpec]] = {}
    for module in modules:
        for declared_in, specs in _declared.items():
            if declared_in != module and not declared_in.startswith(module + "."):
                continue
            for spec in specs:
                other = found.get(spec.name)
                if other is not None and other[1] is not spec:
                    raise RegistryError(f"task type {spec.name!r} is declared twice: in "
                                        f"{other[0]} and in {declared_in}")
                found[spec.name] = (declared_in, spec)
    unknown = sorted(set(disabled) - set(found))
    if unknown:
        raise RegistryError(f"{DISABLED_TASK_TYPES} names types not registered: "
                            f"{', '.join(unknown)}; registered: {', '.join(found)}")
    return tuple(spec for name, (_, spec) in found.items() if name not in set(disabled))


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def task_type_names() -> list[str]:
    return [spec.name for spec in task_types()]


def get_spec(name: str) -> TaskSpec:
    for spec in task_types():
        if spec.name == name:
            return spec
    raise UnknownTaskType(name)
