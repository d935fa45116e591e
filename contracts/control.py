"""Control messages: what the gateway tells the workers of a type, on exchange `task-control`."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.limits import TASK_ID_PATTERN
from contracts.messages import utcnow


class CancelRequest(BaseModel):
    """Task `task_id` is cancelled: it must not start, and an attempt running it stops.

    Kept in MongoDB (collection `cancellations`) and published as `<type>.cancel`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str = Field(pattern=TASK_ID_PATTERN)
    task_type: str
    # Whose task: a task id is one tenant's, so another tenant's task under the same id (an
    # outside publisher's message) is not stopped. None only in requests made before tenants
    # were recorded; such a request stops the id whoever owns it.
    tenant: str | None = Field(default=None, max_length=64)
    at: AwareDatetime = Field(default_factory=utcnow)
    # Who asked: the gateway's app id, for ops reading the console.
    by: str
