"""The commands the use cases take: what a caller asks for, as plain data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SubmitTask:
    """Run a task of `task_type` on `payload` (in its JSON form, as it will travel).

    The options left None take the task type's defaults. With `idempotency_key`, repeating the
    same command (of the same tenant) returns the same task, which runs once.
    """

    task_type: str
    payload: dict[str, Any]
    max_attempts: int | None = None
    timeout_s: float | None = None
    retry_base_s: float | None = None
    not_before: datetime | None = None
    idempotency_key: str | None = None
    # Who submits it (an API key's tenant); None: the default tenant. Idempotency-Keys are
    # per tenant, so the tenant is not part of the fingerprint but of the key's scope.
    tenant: str | None = None
    labels: tuple[str, ...] = ()
    # A workflow's follow-ups (contracts.messages.FollowUp, in their JSON form), checked.
    then: tuple[dict[str, Any], ...] = ()
    # The task's id, when the caller makes it (a schedule's run: from its run key); None: a
    # new one. Not part of the fingerprint.
    task_id: str | None = None

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to: the command but its key, independent of key
        order and whitespace, an option left unset the same as one set to None."""
        request: dict[str, Any] = {"task_type": self.task_type, "payload": self.payload}
        options = {"max_attempts": self.max_attempts, "timeout_s": self.timeout_s,
                   "retry_base_s": self.retry_base_s,
                   "not_before": self.not_before.isoformat() if self.not_before else None}
        request.update({name: value for name, value in options.items() if value is not None})
        if self.labels:
            # Only when given, so a request without labels keeps its fingerprint of before.
            request["labels"] = list(self.labels)
        if self.then:
            request["then"] = list(self.then)
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()
