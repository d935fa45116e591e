"""The one place that knows the task types: name, payload model, limits and backoff.

Adding a task type is one payload model, one line here and one line binding its handler in
`consumers/handlers/__init__.py`. This package names no handler: the consumers bind one to each
spec, and check at start-up that every spec has exactly one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Generic

from typing_extensions import TypeVar

from contracts.limits import DAY_S, TaskLimits
from contracts.names import task_exchange
from contracts.payloads import Payload, SendEmailPayload, SleepPayload, WebhookPayload

# Covariant, so a spec of one payload type is a spec of `Payload`; a bare `TaskSpec` means that.
P_co = TypeVar("P_co", bound=Payload, covariant=True, default=Payload)


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


SEND_EMAIL = TaskSpec(name="send_email", payload=SendEmailPayload, timeout_cap_s=120.0)
WEBHOOK = TaskSpec(name="webhook", payload=WebhookPayload, timeout_s=15.0)
# A sleep task may ask for 300 s, so its attempts need a little more.
SLEEP = TaskSpec(name="sleep", payload=SleepPayload, timeout_s=310.0, prefetch=64,
                 timeout_cap_s=600.0)

TASK_TYPES: tuple[TaskSpec, ...] = (SEND_EMAIL, WEBHOOK, SLEEP)


class UnknownTaskType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task type {name!r}; known: {', '.join(task_type_names())}")
        self.name = name


def task_type_names() -> list[str]:
    return [spec.name for spec in TASK_TYPES]


def task_type_of_exchange(exchange: str | None, *, suffix: str = "") -> str | None:
    """The registered type whose task exchange, plus `suffix` (".dead" for its dead letters),
    is `exchange`; None for any other. A submission's copy and a dead letter are told apart,
    and typed, by the exchange they were published to."""
    for spec in TASK_TYPES:
        if exchange == task_exchange(spec.name) + suffix:
            return spec.name
    return None


def get_spec(name: str) -> TaskSpec:
    for spec in TASK_TYPES:
        if spec.name == name:
            return spec
    raise UnknownTaskType(name)


def check_registry(specs: tuple[TaskSpec, ...] = TASK_TYPES) -> None:
    """Refuse a registry that names one type twice."""
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"task types registered twice: {', '.join(duplicates)}")
