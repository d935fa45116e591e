"""A MongoDB failover as the whole system sees one: the gateway, the worker and the projector
reach the read model through a proxy (tests/support/fault_proxy.py) that cuts every connection
when a chosen write passes — the gateway's `queued` inserts, with and without their answer lost,
and the projector's bulk writes, their answer lost, once followed by a second of refused
connections as during an election — while 32 clients keep submitting. Nothing may be lost or
regress, and every POST must be accepted: a failed `queued` record after a confirmed publish
still answers 202 (the gateway publishes the `queued` event instead and holds the task readable).

nx-27017 is a single server, so this proves what the processes do about a cut (fall back, hold,
retry), not a real replica set's election. The tracker reads the server directly, so the
measurement itself is never cut.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from contracts.statuses import Status
from tests.faults.scoreboard import Expect, Row
from tests.faults.system import System
from tests.faults.tracking import TaskTracker, TrackerFactory, assert_passed, until, webhook
from tests.support.fault_proxy import FaultProxy
from tests.support.receivers import WebhookReceiver
from tests.support.services import MONGO_HOST, MONGO_PORT, Backends

NewRow = Callable[[str], Row]
CLIENTS = 32
INTERVAL_S = 0.15
MIN_ACCEPTED = 200
WARM_UP = 64  # tasks accepted before the first cut
AFTER_CUTS = 100  # tasks accepted after the last one
CUT_WAIT_S = 10.0
# Log lines that show a cut hit the process it was aimed at (service/submit.py,
# projector/store_retry.py).
GATEWAY_FELL_BACK = "queued but not yet in the read model"
PROJECTOR_HELD = "MongoDB unavailable, holding events"


@dataclass(frozen=True)
class Cut:
    """One fault: every connection cut when the next `command` passes the proxy."""

    command: str
    target: str  # whose write it is, for the note
    reply_lost: bool
    refuse_s: float = 0.0

    def arm(self, proxy: FaultProxy) -> asyncio.Event:
        return proxy.cut_at(self.command, reply_lost=self.reply_lost, refuse_s=self.refuse_s)

    def describe(self) -> str:
        when = "answer lost" if self.reply_lost else "before the server saw it"
        refusing = f", then new connections refused {self.refuse_s:g} s" if self.refuse_s else ""
        return f"{self.target} ({when}{refusing})"


# The gateway writes `queued` with inserts (new ids); the projector folds the worker's events
# into stored tasks with guarded replaces, which the wire calls `update`.
CUTS = (
    Cut("insert", "gateway `queued` insert", reply_lost=False),
    Cut("insert", "gateway `queued` insert", reply_lost=True),
    Cut("update", "projector bulk write", reply_lost=True),
    Cut("update", "projector bulk write", reply_lost=True, refuse_s=1.0),
)


@pytest.fixture
async def proxy(system: System) -> AsyncIterator[FaultProxy]:
    """The proxy in front of the session's server. The processes stop before it closes, so
    their last writes (the projector's flush on SIGTERM) still reach the server."""
    cutter = FaultProxy(MONGO_HOST, MONGO_PORT)
    await cutter.start()
    yield cutter
    await system.stop_all()
    await cutter.close()


async def make_cut(cut: Cut, proxy: FaultProxy, tracker: TaskTracker) -> float:
    """Arm `cut`, wait until it happened, then until a request sent after it was accepted;
    the time (monotonic) it happened."""
    happened = cut.arm(proxy)
    try:
        await asyncio.wait_for(happened.wait(), CUT_WAIT_S)
    except TimeoutError:
        raise AssertionError(f"no {cut.command} passed the proxy in {CUT_WAIT_S:g} s to cut "
                             f"({cut.describe()})") from None
    cut_at = time.monotonic()
    await until(lambda: tracker.accepted_since(cut_at) > 0, timeout_s=15,
                what=f"a 202 for a request sent after the cut of a {cut.describe()}")
    return cut_at


def log_count(system: System, process_prefix: str, text: str) -> int:
    return sum(p.log().count(text) for p in system.processes if p.name.startswith(process_prefix))


def note_run(row: Row, proxy: FaultProxy, tracker: TaskTracker, *, last_cut: float,
             fell_back: int, held: int) -> None:
    """The row's notes: the cuts made, what went through the proxy, what the processes did
    about the cuts, and the times."""
    made = Counter(cut.target for cut in CUTS)
    row.note(f"cuts made: {', '.join(f'{n} x {target}' for target, n in made.items())} "
             f"({'; '.join(cut.describe() for cut in CUTS)})")
    row.note(f"through the proxy: {proxy.connections} connections, {proxy.cuts} cut, "
             f"{proxy.refused} refused; requests {dict(proxy.requests.most_common(4))}")
    slowest = max(s.latency_s for s in tracker.submissions if s.accepted)
    row.note(f"gateway fell back to the `queued` event {fell_back} time(s), projector held a "
             f"batch {held} time(s); 503s: {row.refused}, so no refusal window (a cut costs "
             f"latency: slowest 202 {slowest:.1f} s)")
    if row.converge_s is not None and tracker.started is not None:
        row.note(f"converged {row.converge_s:.1f} s after the first submission, "
                 f"{tracker.started + row.converge_s - last_cut:.1f} s after the last cut")


@pytest.mark.timeout(120)
async def test_mongodb_failover_mid_write(
    system: System, proxy: FaultProxy, tracker_for: TrackerFactory, new_row: NewRow,
    receiver: WebhookReceiver, local_services: Backends,
) -> None:
    """32 clients submit webhook tasks throughout; four cuts in turn, each once a request sent
    after the one before was accepted; then more submissions, and every task must succeed."""
    row = new_row("19. MongoDB failover (connections cut mid-write)")
    began = time.monotonic()
    # Every process reads and writes through the proxy; the gateway's API key is made through
    # it too, before any cut is armed.
    url = await system.start(workers=("webhook",), MONGODB_URL=proxy.url())
    tracker = tracker_for(row, url, mongodb_url=local_services.mongodb_url)
    stop = asyncio.Event()

    def task(i: int) -> tuple[dict[str, object], Expect]:
        return webhook(receiver.url(f"/s19/{i}")), Expect(Status.SUCCEEDED)

    async with tracker.watching():
        submitting = asyncio.create_task(
            tracker.submit_continuously(task, stop, concurrency=CLIENTS, interval_s=INTERVAL_S,
                                        limit=20_000))
        try:
            await until(lambda: row.accepted >= WARM_UP, timeout_s=20,
                        what=f"{WARM_UP} tasks accepted")
            cut_times = [await make_cut(cut, proxy, tracker) for cut in CUTS]
            accepted_at_last_cut = row.accepted
            await until(lambda: row.accepted >= accepted_at_last_cut + AFTER_CUTS,
                        timeout_s=20, what=f"{AFTER_CUTS} more tasks accepted after the last cut")
        finally:
            stop.set()
            await submitting
        converged = await tracker.converge(timeout_s=45)

    fell_back = log_count(system, "gateway", GATEWAY_FELL_BACK)
    held = log_count(system, "projector", PROJECTOR_HELD)
    note_run(row, proxy, tracker, last_cut=cut_times[-1], fell_back=fell_back, held=held)
    row.note(f"row took {time.monotonic() - began:.1f} s")
    assert row.accepted >= MIN_ACCEPTED, f"only {row.accepted} tasks accepted"
    # Each armed cut happened (make_cut waits for it); these say the processes' writes went
    # through the proxy and the cuts hit them.
    assert proxy.requests["insert"] > 0, "no gateway insert went through the proxy"
    assert proxy.requests["update"] > 0, "no projector write went through the proxy"
    assert proxy.cuts >= len(CUTS), f"only {proxy.cuts} connections cut"
    assert proxy.refused >= 1, "no connection refused after the election-like cut"
    assert fell_back >= 1, "no cut hit a gateway `queued` insert"
    assert held >= 1, "no cut hit a projector bulk write"
    assert_passed(row, converged, system.logs())
