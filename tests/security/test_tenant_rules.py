"""The pure rules under tenants and keys: who owns a task (the projection, the message), what a
key looks like, and the rate limit's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.decode import decode
from contracts import names
from contracts.messages import StatusEvent
from contracts.projection import TaskState, apply
from contracts.registry import get_spec
from contracts.statuses import Status
from infra.amqp_codec import tenant_of
from service.auth import Principal, hash_token, key_id_of, new_token
from service.errors import RateLimited
from service.rate_limit import RateLimiter
from tests.support.memory import ManualClock
from tests.unit.fakes import incoming

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def event(status: Status, attempt: int, seconds: float = 0, **fields: Any) -> StatusEvent:
    return StatusEvent(task_id="t-1", task_type="sleep", status=status, attempt=attempt,
                       at=T0 + timedelta(seconds=seconds), worker="w-1", **fields)


def fold(*events: StatusEvent) -> TaskState:
    state: TaskState | None = None
    for each in events:
        state = apply(state, each)
    assert state is not None
    return state


# --- the projection -------------------------------------------------------------------------

def test_the_tenant_of_the_first_event_that_names_one_stays() -> None:
    state = fold(event(Status.QUEUED, 0, tenant="acme"),
                 event(Status.RUNNING, 1, 1, tenant="other"),
                 event(Status.SUCCEEDED, 1, 2))

    assert (state.status, state.tenant) == (Status.SUCCEEDED, "acme")


def test_a_late_queued_still_names_the_owner_without_moving_the_status() -> None:
    running = fold(event(Status.RUNNING, 1, 1))
    assert running.tenant is None

    after = apply(running, event(Status.QUEUED, 0, tenant="acme"))

    assert (after.status, after.attempt, after.position) == (
        Status.RUNNING, 1, running.position)
    assert after.tenant == "acme"
    assert apply(after, event(Status.QUEUED, 0, tenant="acme")) is after  # idempotent


# --- a task message's tenant ----------------------------------------------------------------

def test_a_message_names_its_tenant_in_a_header_else_the_default_tenant_owns_it() -> None:
    tagged = incoming({"payload": {"seconds": 0}}, headers={names.HEADER_TENANT: b"acme"})
    bare = incoming({"payload": {"seconds": 0}})
    garbled = incoming({"payload": {"seconds": 0}}, headers={names.HEADER_TENANT: "a/b c"})

    assert tenant_of(tagged, "default") == "acme"
    assert tenant_of(bare, "default") == "default"
    assert tenant_of(garbled, "default") == "default"
    assert decode(tagged, get_spec("sleep"), default_tenant="dflt").tenant == "acme"
    assert decode(bare, get_spec("sleep"), default_tenant="dflt").tenant == "dflt"


# --- keys -----------------------------------------------------------------------------------

def test_a_new_key_names_its_id_and_hashes_differently_from_any_other() -> None:
    key_id, token = new_token()
    other_id, other = new_token()

    assert token.startswith(f"tp_{key_id}_")
    assert key_id_of(token) == key_id
    assert key_id != other_id
    assert hash_token(token) != hash_token(other)
    assert token not in hash_token(token)


@pytest.mark.parametrize("token", [
    "", "tp_", "tp_0123456789abcdef_", "tp_0123456789abcdef_short",
    "xx_0123456789abcdef_" + "a" * 43, "tp_0123456789ABCDEF_" + "a" * 43,
    "tp_0123456789abcdef_" + "a" * 43 + " ", "tp_0123456789abcdef_" + "a/" * 30,
])
def test_anything_but_a_well_formed_key_names_no_key_id(token: str) -> None:
    assert key_id_of(token) is None


# --- the rate limit -------------------------------------------------------------------------

def test_a_bucket_holds_a_seconds_worth_and_refills_at_the_rate() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock)
    caller = Principal(tenant="t", scopes=frozenset(), key_id="k", rate_per_s=10)

    for _ in range(10):
        limiter.admit(caller)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(caller)
    clock.advance(0.1)
    limiter.admit(caller)

    assert refused.value.retry_after_s == 1
    with pytest.raises(RateLimited):
        limiter.admit(caller)


def test_a_slow_key_is_told_how_long_to_wait() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock=clock)
    caller = Principal(tenant="t", scopes=frozenset(), key_id="k", rate_per_s=0.25)

    limiter.admit(caller)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(caller)

    assert refused.value.retry_after_s == 4
