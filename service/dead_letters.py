"""Dead letters as the use cases see them, and the ports that keep, find and resend them.

A dead letter is the last message of one run of a task: `(tenant, task_id, run)` names it. A
task id is one tenant's, so another tenant's message under the same id is another letter: a
replay finds only its own tenant's. The archive keeps one per name; a replay claims it before
publishing, so a letter is replayed once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.auth import DEFAULT_TENANT


def letter_id(tenant: str, task_id: str, run: int) -> str:
    """The archive's key of the dead letter of one run of a tenant's task (a tenant name holds
    no '/')."""
    return f"{tenant}/{task_id}/{run}"


@dataclass(frozen=True)
class ReplayClaim:
    """Who replays a letter, and since when: the token makes the claim a compare-and-set."""

    token: str
    at: datetime


@dataclass(frozen=True)
class DeadLetter:
    """A task message that ended in `tasks.<type>.dead`, with what a replay needs to send it
    again: its body, AMQP properties and headers as the broker delivered them."""

    task_id: str
    task_type: str
    run: int
    attempt: int
    reason: str
    last_error: str | None
    dead_at: datetime | None
    # None when the body was too large to archive: only the queue's copy can be replayed then.
    body: bytes | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    replay: ReplayClaim | None = None
    # Whose task the message was (infra.rabbitmq.amqp_codec.tenant_of, as when it ran).
    tenant: str = DEFAULT_TENANT

    @property
    def letter_id(self) -> str:
        return letter_id(self.tenant, self.task_id, self.run)

    @property
    def replayed(self) -> bool:
        return self.replay is not None


class DeadLetterArchive(Protocol):
    """Every dead letter, kept by `(tenant, task_id, run)` apart from the broker's queue, so a
    replay finds its own letter without reading (and holding) the queue."""

    async def keep(self, letter: DeadLetter) -> None:
        """Archive `letter`, unless a letter of its run is archived already (a redelivery)."""

    async def find(self, tenant: str, task_id: str, run: int) -> DeadLetter | None:
        """The archived letter of that run of the tenant's task, if any."""

    async def find_many(self, letter_ids: Sequence[str]) -> dict[str, DeadLetter]:
        """The archived letters among `letter_ids`, by id."""

    async def claim(self, letter: DeadLetter, claim: ReplayClaim) -> bool:
        """Mark `letter` replayed by `claim` if its claim is still the one `letter` carries
        (archiving it so if it was not archived); False if another replay got there first."""

    async def release(self, letter: DeadLetter, claim: ReplayClaim) -> None:
        """Withdraw `claim` (its publish failed), if it is still the letter's claim."""


class LetterPublisher(Protocol):
    async def republish(self, letter: DeadLetter) -> None:
        """Publish `letter` to its task exchange again, confirmed: same task id, attempt 1,
        run + 1, without the cause of death."""


# Called for each letter met in the queue; True takes that message off the queue.
Choose = Callable[[DeadLetter], Awaitable[bool]]


class DeadLetterQueue(Protocol):
    """The broker's `tasks.<type>.dead` queue, read by scanning it (holding what it has read)."""

    async def scan(self, task_type: str, choose: Choose | None = None) -> list[DeadLetter]:
        """Every letter in the queue when the scan starts (never one that arrives during it);
        those `choose` takes are removed, the others put back."""
