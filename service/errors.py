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


class Unauthenticated(ServiceError):
    """No API key, a malformed one, or one the store does not know or has revoked."""


class Forbidden(ServiceError):
    """The API key lacks the scope this operation needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the scope {scope!r}")
        self.scope = scope


class RateLimited(ServiceError):
    """The API key is over its rate limit; `retry_after_s` is when a request passes again."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class InvalidKeyRequest(ServiceError, ValueError):
    """A key cannot be made as asked (unknown scope, bad tenant name, bad rate)."""


class AlreadyFinished(ServiceError):
    """The task has a terminal status already: there is nothing left to cancel."""

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id!r} is already {status}")
        self.status = status


class InvalidCursor(ServiceError, ValueError):
    """A listing's `cursor` is not one a listing answered."""
