"""API keys on the HTTP API, on the in-process gateway over in-memory ports: 401 without a
valid key, 403 without the scope, 404 for another tenant's task, 429 over the rate limit; the
open endpoints stay open."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.messages import StatusEvent
from contracts.statuses import Status
from gateway.auth import Reader
from service.api_keys import revoke_key
from service.auth import READ, REPLAY, SCOPES, SUBMIT, key_id_of, new_token
from tests.fast.conftest import SETTINGS, TENANT, ClientFor, Fakes, Issue

SLEEP = {"task_type": "sleep", "payload": {"seconds": 0}}
# Every task endpoint: (method, path), the scope it needs.
ENDPOINTS = [(("POST", "/tasks"), SUBMIT), (("GET", "/tasks/t-1"), READ),
             (("POST", "/tasks/t-1/retry"), REPLAY),
             (("GET", "/tasks?status=failed"), READ), (("GET", "/tasks/stats"), READ)]


async def call(client: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
    return await client.request(method, path, json=SLEEP if path == "/tasks" else None)


async def submitted(client: httpx.AsyncClient, **headers: str) -> str:
    answer = await client.post("/tasks", json=SLEEP, headers=headers)
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


# --- 401 ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [endpoint for endpoint, _ in ENDPOINTS])
async def test_without_a_key_every_task_endpoint_is_a_401_with_a_bearer_challenge(
    client_for: ClientFor, fakes: Fakes, method: str, path: str,
) -> None:
    anonymous = await client_for(None)

    answer = await call(anonymous, method, path)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert fakes.publisher.published == []


@pytest.mark.parametrize("authorization", [
    "Bearer", "Bearer ", "Bearer not-a-key", "Basic dXNlcjpwYXNz", "tp_0123456789abcdef_x",
    f"Bearer {new_token()[1]}x", f"Bearer {new_token()[1][:-1]}!",
], ids=["no token", "empty token", "garbage", "basic auth", "no scheme", "too long",
        "bad character"])
async def test_a_malformed_key_is_a_401(
    client_for: ClientFor, authorization: str,
) -> None:
    client = await client_for(None)

    answer = await client.get("/tasks/t-1", headers={"Authorization": authorization})

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_well_formed_key_the_store_does_not_know_is_a_401(
    client_for: ClientFor, issue: Issue,
) -> None:
    known = await issue()
    # The id of a real key with another secret: the hash must match, not only the id.
    forged = known[: known.rindex("_") + 1] + "A" * 43
    _, unknown = new_token()

    for key in (unknown, forged):
        answer = await (await client_for(key)).get("/tasks/t-1")
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_a_revoked_key_is_refused_once_the_cache_window_has_passed(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    key = await issue()
    client = await client_for(key)
    assert (await client.get("/tasks/t-1")).status_code == 404  # accepted, and cached
    key_id = key_id_of(key)
    assert key_id is not None

    assert await revoke_key(fakes.api_keys, key_id) is not None
    fakes.clock.advance(SETTINGS.api_key_cache_s - 0.1)
    within = await client.get("/tasks/t-1")
    fakes.clock.advance(0.2)
    after = await client.get("/tasks/t-1")

    assert within.status_code == 404  # the window docs/security.md promises, no longer
    assert after.status_code == 401
    assert after.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_the_store_is_read_once_per_key_per_cache_window(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    client = await client_for(await issue())

    for _ in range(50):
        await client.get("/tasks/t-1")
    fakes.clock.advance(SETTINGS.api_key_cache_s)
    await client.get("/tasks/t-1")

    assert fakes.api_keys.reads == 2


async def test_while_the_key_store_is_down_a_key_seen_before_still_works_and_a_new_one_is_503(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    seen = await client_for(await issue())
    unseen = await client_for(await issue())
    assert (await seen.post("/tasks", json=SLEEP)).status_code == 202

    fakes.api_keys.down = True
    fakes.clock.advance(SETTINGS.api_key_cache_s * 3)
    still = await seen.post("/tasks", json=SLEEP)
    refused = await unseen.post("/tasks", json=SLEEP)

    assert still.status_code == 202
    assert refused.status_code == 503
    assert len(fakes.publisher.published) == 2


# --- 403 ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "needed"), ENDPOINTS, ids=[s for _, s in ENDPOINTS])
async def test_a_key_without_the_endpoints_scope_is_a_403_naming_it(
    client_for: ClientFor, issue: Issue, fakes: Fakes, endpoint: tuple[str, str], needed: str,
) -> None:
    others = tuple(scope for scope in SCOPES if scope != needed)
    client = await client_for(await issue(scopes=others))

    answer = await call(client, *endpoint)

    assert answer.status_code == 403
    assert needed in answer.json()["detail"]
    assert f'scope="{needed}"' in answer.headers["WWW-Authenticate"]
    assert fakes.publisher.published == []


async def test_a_key_with_only_the_endpoints_scope_gets_through(
    client_for: ClientFor, issue: Issue,
) -> None:
    submitter = await client_for(await issue(scopes=(SUBMIT,)))
    reader = await client_for(await issue(scopes=(READ,)))
    replayer = await client_for(await issue(scopes=(REPLAY,)))

    task_id = await submitted(submitter)

    assert (await reader.get(f"/tasks/{task_id}")).status_code == 200
    # Queued, so not retryable: the scope let it through to the rule.
    assert (await replayer.post(f"/tasks/{task_id}/retry")).status_code == 409


# --- tenants --------------------------------------------------------------------------------

async def test_another_tenants_task_is_a_404_exactly_like_a_missing_one(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    owner = await client_for(await issue(tenant="acme"))
    stranger = await client_for(await issue(tenant="globex"))
    task_id = await submitted(owner)
    missing_id = f"missing-{uuid.uuid4()}"

    def same_as_missing(answer: httpx.Response, missing: httpx.Response) -> bool:
        expected: Any = missing.json()["detail"].replace(missing_id, task_id)
        return (answer.status_code, answer.json(), answer.headers.get("content-type")) == (
            404, {"detail": expected}, missing.headers.get("content-type"))

    read = await stranger.get(f"/tasks/{task_id}")
    retried = await stranger.post(f"/tasks/{task_id}/retry")

    assert same_as_missing(read, await stranger.get(f"/tasks/{missing_id}"))
    assert same_as_missing(retried, await stranger.post(f"/tasks/{missing_id}/retry"))
    assert (await owner.get(f"/tasks/{task_id}")).status_code == 200
    assert (await owner.post(f"/tasks/{task_id}/retry")).status_code == 409
    assert len(fakes.publisher.published) == 1


async def test_a_task_carries_its_tenant_to_the_broker_and_the_read_model(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    task_id = await submitted(await client_for(await issue(tenant="acme")))

    [published] = fakes.publisher.published
    assert (published.envelope.task_id, published.tenant) == (task_id, "acme")
    assert fakes.read_model.states[task_id].tenant == "acme"


async def test_a_task_that_names_no_tenant_belongs_to_the_default_tenant(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    # As the projector records a task published straight to RabbitMQ before tenants.
    task_id = f"direct-{uuid.uuid4()}"
    await fakes.read_model.apply(StatusEvent(task_id=task_id, task_type="sleep",
                                             status=Status.QUEUED, attempt=0, worker="test"))
    default = await client_for(await issue(tenant=SETTINGS.default_tenant))
    other = await client_for(await issue(tenant=TENANT))

    assert (await default.get(f"/tasks/{task_id}")).status_code == 200
    assert (await other.get(f"/tasks/{task_id}")).status_code == 404


async def test_idempotency_keys_are_per_tenant(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    acme = await client_for(await issue(tenant="acme"))
    globex = await client_for(await issue(tenant="globex"))
    shared = f"order-{uuid.uuid4()}"

    first = await submitted(acme, **{"Idempotency-Key": shared})
    theirs = await submitted(globex, **{"Idempotency-Key": shared})
    again = await submitted(acme, **{"Idempotency-Key": shared})

    assert first != theirs
    assert again == first
    assert [p.envelope.task_id for p in fakes.publisher.published] == [first, theirs]
    assert (await globex.get(f"/tasks/{first}")).status_code == 404


# --- 429 ------------------------------------------------------------------------------------

async def test_over_its_rate_a_key_gets_429_with_retry_after_and_others_go_on(
    client_for: ClientFor, issue: Issue, fakes: Fakes,
) -> None:
    slow = await client_for(await issue(rate_per_s=2))
    other = await client_for(await issue())

    allowed = [(await slow.get("/tasks/t-1")).status_code for _ in range(2)]
    limited = await slow.get("/tasks/t-1")
    unaffected = await other.get("/tasks/t-1")
    fakes.clock.advance(1.0)
    later = await slow.get("/tasks/t-1")

    assert allowed == [404, 404]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert unaffected.status_code == 404
    assert later.status_code == 404


async def test_the_default_rate_does_not_throttle_a_bench_sized_burst(
    client_for: ClientFor, issue: Issue,
) -> None:
    client = await client_for(await issue())

    codes = {(await client.get("/tasks/t-1")).status_code for _ in range(1000)}

    assert codes == {404}


# --- open endpoints and the API description -------------------------------------------------

@pytest.mark.parametrize("path", ["/health", "/health/ready", "/docs", "/openapi.json",
                                  "/asyncapi.json", "/metrics"])
async def test_the_open_endpoints_need_no_key(client_for: ClientFor, path: str) -> None:
    answer = await (await client_for(None)).get(path)

    assert answer.status_code == 200


async def test_the_openapi_document_shows_the_bearer_scheme_on_task_endpoints_only(
    client_for: ClientFor,
) -> None:
    document = (await (await client_for(None)).get("/openapi.json")).json()

    schemes = document["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert scheme["bearerFormat"] == "tp_<key_id>_<secret>"
    for path, method in (("/tasks", "post"), ("/tasks/{task_id}", "get"),
                         ("/tasks/{task_id}/retry", "post")):
        operation = document["paths"][path][method]
        assert operation["security"] == [{name: []}], path
        assert {"401", "403", "429"} <= set(operation["responses"]), path
    for path in ("/health", "/health/ready"):
        assert "security" not in document["paths"][path]["get"]


async def test_a_scoped_route_outside_the_task_router_refuses_even_a_valid_key(
    gateway: FastAPI, client_for: ClientFor, issue: Issue,
) -> None:
    # A later route that names a scope but was mounted past the router's key check.
    async def stray(principal: Reader) -> dict[str, str]:
        return {"tenant": principal.tenant}

    gateway.add_api_route("/stray", stray, methods=["GET"])

    answer = await (await client_for(await issue())).get("/stray")

    assert answer.status_code == 401
