"""The one place that knows the task types: name, payload model, handler and limits.

Adding a task type is one payload model, one handler function and one line here. Handlers are
named by dotted path so this package stays free of IO; the consumer resolves and checks them at
start-up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from contracts.payloads import Payload, SendEmailPayload, SleepPayload, WebhookPayload


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    name: str
    payload: type[Payload]
    handler: str  # "package.module:function"
    max_attempts: int = 5
    timeout_s: float = 30.0
    retry_base_s: float = 1.0
    retry_cap_s: float = 120.0
    # Deliveries before RabbitMQ dead-letters a message that keeps killing its consumer.
    # Each requeue counts on RabbitMQ 3.x, graceful shutdowns included, so leave headroom.
    delivery_limit: int = 10
    prefetch: int = 16

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"task type {self.name!r} must be a Python identifier")
        if ":" not in self.handler:
            raise ValueError(f"handler {self.handler!r} must look like 'module:function'")

    def retry_delay_s(
        self, attempt: int, rng: random.Random | None = None, *, base_s: float | None = None
    ) -> float:
        """Exponential backoff with jitter in its upper half, capped at `retry_cap_s`.

        `base_s` overrides the type's `retry_base_s` for one task.
        """
        base = self.retry_base_s if base_s is None else base_s
        ceiling = min(self.retry_cap_s, base * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(ceiling / 2, ceiling)


_HANDLERS = "consumers.handlers"

TASK_TYPES: tuple[TaskSpec, ...] = (
    TaskSpec(name="send_email", payload=SendEmailPayload,
             handler=f"{_HANDLERS}.send_email:send_email"),
    TaskSpec(name="webhook", payload=WebhookPayload,
             handler=f"{_HANDLERS}.webhook:call_webhook", timeout_s=15.0),
    TaskSpec(name="sleep", payload=SleepPayload,
             handler=f"{_HANDLERS}.sleep:sleep", timeout_s=310.0, prefetch=64),
)


class UnknownTaskType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task type {name!r}; known: {', '.join(task_type_names())}")
        self.name = name


def task_type_names() -> list[str]:
    return [spec.name for spec in TASK_TYPES]


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
