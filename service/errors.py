"""The service layer's errors: one tree, each a thing a caller can act on.

The gateway maps each to an HTTP answer (gateway/error_responses.py); nothing here knows of HTTP.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the use cases raise on purpose."""


class TaskNotFound(ServiceError, LookupError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task {task_id!r}")


class NotRetryable(ServiceError):
    """Only a task that ended `failed` or `dead` with its message kept can be retried."""


class IdempotencyConflict(ServiceError):
    """The key was used before with a different request."""


class IdempotencyInProgress(ServiceError):
    """Another request with this key is still being published."""


class StoreUnavailable(ServiceError):
    """The task store (MongoDB) did not answer in time."""


class PublishFailed(ServiceError):
    """The broker did not confirm a task: treat it as not sent (nothing was queued)."""


class QueueFull(PublishFailed):
    """The broker refused the task because its queue is at its length limit."""
