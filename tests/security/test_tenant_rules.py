"""The pure rules under tenants and keys: who owns a task (the projection, the message), what a
key looks like, and the rate limit's arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage

from consumers.decode import InvalidTask, decode
from contracts import names
from contracts.messages import StatusEvent
from contracts.projection import apply
from contracts.registry import get_spec
from contracts.statuses import Status
from infra.rabbitmq.amqp_codec import TenantRules, UnknownPublisher, tenant_of
from service.auth import Principal, hash_token, key_id_of, new_token
from service.errors import RateLimited
from service.rate_limit import RateLimiter
from tests.fakes.amqp_message import incoming
from tests.fakes.ports import ManualClock
from tests.support.projection import fold

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def event(status: Status, attempt: int, seconds: float = 0, **fields: Any) -> StatusEvent:
    return StatusEvent(task_id="t-1", task_type="sleep", status=status, attempt=attempt,
                       at=T0 + timedelta(seconds=seconds), worker="w-1", **fields)



# --- the projection -------------------------------------------------------------------------

def test_the_tenant_of_the_first_event_that_names_one_stays() -> None:
    # Another tenant's events, and events that name none, change nothing of acme's task.
    state = fold(event(Status.QUEUED, 0, tenant="acme"),
                 event(Status.RUNNING, 1, 1, tenant="other"),
                 event(Status.SUCCEEDED, 1, 2))

    assert (state.status, state.tenant) == (Status.QUEUED, "acme")


def test_a_late_queued_still_names_the_owner_without_moving_the_status() -> None:
    running = fold(event(Status.RUNNING, 1, 1))
    assert running.tenant is None

    after = apply(running, event(Status.QUEUED, 0, tenant="acme"))

    assert (after.status, after.attempt, after.position) == (
        Status.RUNNING, 1, running.position)
    assert after.tenant == "acme"
    assert apply(after, event(Status.QUEUED, 0, tenant="acme")) is after  # idempotent


# --- a task message's tenant ----------------------------------------------------------------

DEV = TenantRules(default_tenant="dflt", development=True)
PROD = TenantRules(default_tenant="dflt", service_users=frozenset({"gw"}),
                   publishers={"billing-svc": "billing"})


def sleep_message(**properties: Any) -> AbstractIncomingMessage:
    return incoming({"payload": {"seconds": 0}}, message_id="t-1", **properties)


def test_in_development_a_message_names_its_tenant_in_a_header_else_the_default_owns_it() -> None:
    tagged = sleep_message(headers={names.HEADER_TENANT: b"acme"})
    garbled = sleep_message(headers={names.HEADER_TENANT: "a/b c"})

    assert tenant_of(tagged, DEV) == "acme"
    assert tenant_of(sleep_message(), DEV) == "dflt"
    assert tenant_of(garbled, DEV) == "dflt"
    assert decode(tagged, get_spec("sleep"), tenants=DEV).tenant == "acme"
    assert decode(sleep_message(), get_spec("sleep"), tenants=DEV).tenant == "dflt"


def test_a_service_users_header_names_the_tenant() -> None:
    assert tenant_of(sleep_message(user_id="gw", headers={names.HEADER_TENANT: "acme"}),
                     PROD) == "acme"
    assert tenant_of(sleep_message(user_id="gw"), PROD) == "dflt"


@pytest.mark.parametrize("rules", [DEV, PROD], ids=["development", "production"])
def test_an_outside_publishers_tenant_is_its_users_whatever_header_it_sends(
    rules: TenantRules,
) -> None:
    rules = TenantRules(**{**rules.__dict__, "publishers": {"billing-svc": "billing"}})
    forged = sleep_message(user_id="billing-svc", headers={names.HEADER_TENANT: "acme"})

    assert tenant_of(forged, rules) == "billing"
    assert decode(forged, get_spec("sleep"), tenants=rules).tenant == "billing"


@pytest.mark.parametrize("properties", [
    {}, {"headers": {names.HEADER_TENANT: "acme"}}, {"user_id": "stranger"},
], ids=["no-user-id", "header-only", "unmapped-user"])
def test_in_production_an_unknown_publishers_task_is_invalid(properties: dict[str, Any]) -> None:
    message = sleep_message(**properties)

    with pytest.raises(UnknownPublisher):
        tenant_of(message, PROD)
    with pytest.raises(InvalidTask, match="publisher not authenticated"):
        decode(message, get_spec("sleep"), tenants=PROD)


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
