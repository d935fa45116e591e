"""Which registered task type an exchange belongs to: a submission's copy and a dead letter are
told apart, and typed, by the exchange they were published to."""

from __future__ import annotations

from contracts import names
from contracts.registry import task_type_names


def task_type_of(exchange: str | None, *, suffix: str) -> str | None:
    """The type whose task exchange, plus `suffix` (".dead" for its dead letters), is
    `exchange`; None for any other exchange."""
    for name in task_type_names():
        if exchange == names.task_exchange(name) + suffix:
            return name
    return None
