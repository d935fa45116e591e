"""How a handler says an attempt failed. Anything else it raises counts as transient."""

from __future__ import annotations


class TaskFailure(Exception):
    """Base of the errors a handler raises on purpose."""


class Retry(TaskFailure):
    """A transient failure: try again later, after `delay_s` if given, else the backoff."""

    def __init__(self, message: str, *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class PermanentFailure(TaskFailure):
    """Trying again cannot help (bad address, 4xx answer): the task ends `failed` at once."""
