"""`GET /health/ready` is open to anyone and outside the concurrency bound, and each check is a
round trip to RabbitMQ and MongoDB: a flood of probes must not become a flood on the store."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from service.health import Readiness, ReadinessProbe
from tests.fast.conftest import ClientFor, Fakes


class CountingPing:
    """The read model's ping, counted, and held until `release` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        await self.release.wait()


async def test_concurrent_readiness_probes_share_one_check_of_the_store(
    gateway: FastAPI, client_for: ClientFor, fakes: Fakes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ping = CountingPing()
    monkeypatch.setattr(fakes.read_model, "ping", ping)
    probe: ReadinessProbe = gateway.state.services.readiness
    check, asked, all_asked = probe.check, 0, asyncio.Event()

    async def counted_check() -> Readiness:
        nonlocal asked
        asked += 1
        if asked == 50:
            all_asked.set()
        return await check()

    monkeypatch.setattr(probe, "check", counted_check)
    anonymous = await client_for(None)

    probes = [asyncio.create_task(anonymous.get("/health/ready")) for _ in range(50)]
    await asyncio.wait_for(all_asked.wait(), timeout=10)  # all 50 wait while the store is held
    ping.release.set()
    answers = await asyncio.gather(*probes)

    assert [answer.status_code for answer in answers] == [200] * 50
    assert ping.calls == 1


async def test_a_readiness_result_is_reused_for_its_max_age_then_checked_again(
    gateway: FastAPI, fakes: Fakes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ping = CountingPing()
    ping.release.set()
    monkeypatch.setattr(fakes.read_model, "ping", ping)
    probe = ReadinessProbe(gateway.state.services.deps, max_age_s=1.0, clock=fakes.clock)

    first = await probe.check()
    fakes.clock.advance(0.9)
    fakes.read_model.down = True
    reused = await probe.check()
    fakes.clock.advance(0.2)
    monkeypatch.undo()
    checked_again = await probe.check()

    assert (first.is_ready, reused.is_ready) == (True, True)
    assert ping.calls == 1
    assert (checked_again.is_ready, checked_again.store) == (False, "unreachable")
