"""Listing and counting a tenant's tasks, and the opaque cursor that pages through a listing.

The cursor is the last item's sort key, (created_at in microseconds since the epoch, task
id), URL-safe base64: the next page starts strictly after it, so tasks that arrive between
two pages never shift the next one and a task is never listed twice.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.limits import is_valid_task_id
from service.dependencies import Dependencies
from service.errors import InvalidCursor
from service.queries import SortKey, TaskCounts, TaskPage, TaskQuery

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEPARATOR = "|"
# How many tasks of each status `task_stats` reads at most (the newest): counting is a scan of
# the tenant's tasks of that status on nx-27017 (about 0.1 ms a task), index-only on MongoDB.
# Past it the answer says so, and from when its counts are exact (TaskCounts).
STATS_CAP = 2_000


@dataclass(frozen=True)
class ListedPage:
    page: TaskPage
    cursor: str | None


def owners_of(deps: Dependencies, tenant: str) -> tuple[str | None, ...]:
    """Whose tasks a tenant sees: its own, and for the default tenant also those that name no
    tenant (service.tasks.owner_of)."""
    return (tenant, None) if tenant == deps.default_tenant else (tenant,)


async def list_tasks(
    deps: Dependencies, query: TaskQuery, *, tenant: str, cursor: str | None = None,
) -> ListedPage:
    """One page of `tenant`'s tasks that `query` matches (its `owners` are set here, so a
    caller can never list another tenant's), and the cursor of the next page (None: the last)."""
    after = decode_cursor(cursor) if cursor else None
    scoped = dataclasses.replace(query, owners=owners_of(deps, tenant), after=after)
    page = await deps.read_model.find(scoped)
    return ListedPage(page, encode_cursor(page.next) if page.next else None)


async def task_stats(deps: Dependencies, *, tenant: str, cap: int = STATS_CAP) -> TaskCounts:
    """`tenant`'s tasks counted per type and status (see TaskCounts for the cap)."""
    return await deps.read_model.count(owners_of(deps, tenant), cap)


def encode_cursor(key: SortKey) -> str:
    micros = (key.created_at - _EPOCH) // timedelta(microseconds=1)
    raw = f"{micros}{_SEPARATOR}{key.task_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    """The sort key a cursor holds; InvalidCursor for anything no listing made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, task_id = raw.split(_SEPARATOR, 1)
        created_at = _EPOCH + timedelta(microseconds=int(micros))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as error:
        raise InvalidCursor("not a cursor this API gave") from error
    if not is_valid_task_id(task_id):
        raise InvalidCursor("not a cursor this API gave")
    return SortKey(created_at, task_id)
