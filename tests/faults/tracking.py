"""Submit tasks over HTTP, follow their status by polling, and count the outcome into a row."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from contracts.statuses import Status
from tests.faults.scoreboard import Expect, Final, RefusalWindow, Row, Submission, count, rank
from tests.support.receivers import WebhookReceiver
from tests.support.waiting import eventually

_HTTP_POLLERS = 3  # clients polling GET /tasks/{id} while a scenario runs
_HTTP_INTERVAL_S = 0.2
_BULK_INTERVAL_S = 0.2
_FINAL_CONCURRENCY = 12


def webhook(url: str, **fields: Any) -> dict[str, Any]:
    """A `POST /tasks` body for a webhook task calling `url`."""
    return {"task_type": "webhook", "payload": {"url": url, "method": "POST"}, **fields}


class TaskTracker:
    """One scenario's tasks: what each must end as, what polling saw, and the counts."""

    def __init__(
        self, row: Row, http: httpx.AsyncClient, receiver: WebhookReceiver,
        tasks: AsyncCollection[dict[str, Any]],
    ) -> None:
        self.row = row
        self.http = http
        self.receiver = receiver
        self.tasks = tasks
        self.read_model_errors = 0
        self.expected: dict[str, Expect] = {}
        self.final: dict[str, Final] = {}
        self.regressed: set[str] = set()
        self.poll_answers: Counter[str] = Counter()
        self.answered_202: set[str] = set()
        self.not_found_after_202: set[str] = set()
        self.submissions: list[Submission] = []
        self.started: float | None = None
        self._top: dict[str, tuple[int, float]] = {}
        self._polls = asyncio.Semaphore(_FINAL_CONCURRENCY)

    # -- submitting -------------------------------------------------------------------------

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    async def submit(
        self, body: Mapping[str, Any], expect: Expect, *, headers: Mapping[str, str] | None = None,
        timeout_s: float = 30.0, sent: asyncio.Event | None = None, allowed: Iterable[int] = (),
    ) -> Submission:
        """POST one task; a 202 makes it tracked with `expect`. Any other answer fails the row
        unless it is one of `allowed` (asked for with this request) or a refusal window covers
        it (see `expect_refusals`). `sent` is set once the whole request is in the gateway's
        socket, whether or not the gateway has read it."""
        self.begin()
        self.row.submitted += 1
        url = body.get("payload", {}).get("url")
        start = time.monotonic()

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            if sent is not None and event == "http11.send_request_body.complete":
                sent.set()

        try:
            answer = await self.http.post("/tasks", json=dict(body), headers=headers,
                                          timeout=timeout_s,
                                          extensions=None if sent is None else {"trace": trace})
        except httpx.HTTPError as error:
            submission = Submission(None, None, start, time.monotonic() - start, url, repr(error),
                                    allowed=frozenset(allowed))
        else:
            task_id = answer.json().get("task_id") if answer.status_code in (200, 202) else None
            submission = Submission(answer.status_code, task_id, start,
                                    time.monotonic() - start, url, allowed=frozenset(allowed))
        self._count_submission(submission, expect)
        return submission

    def _count_submission(self, submission: Submission, expect: Expect) -> None:
        self.submissions.append(submission)
        self.row.answered(submission)
        if submission.task_id is not None:
            self.expected[submission.task_id] = expect
            self.answered_202.add(submission.task_id)

    def expect_refusals(self, *codes: int, why: str) -> RefusalWindow:
        """From now on, until the window is closed, requests may be refused with `codes`: the
        scenario injects a fault. Close it once a request sent after the fault was accepted."""
        return self.row.expect_refusals(*codes, why=why)

    def accepted_since(self, moment: float) -> int:
        """Submissions sent at or after `moment` (time.monotonic()) that were accepted."""
        return sum(1 for s in self.submissions if s.accepted and s.sent_at >= moment)

    async def submit_all(
        self, bodies: Iterable[tuple[Mapping[str, Any], Expect]], *, concurrency: int = 16,
    ) -> list[Submission]:
        """Submit every body, `concurrency` at a time, in order of the iterable."""
        gate = asyncio.Semaphore(concurrency)

        async def one(body: Mapping[str, Any], expect: Expect) -> Submission:
            async with gate:
                return await self.submit(body, expect)

        return await asyncio.gather(*(one(body, expect) for body, expect in bodies))

    async def submit_continuously(
        self, make: Callable[[int], tuple[Mapping[str, Any], Expect]], stop: asyncio.Event, *,
        concurrency: int, interval_s: float, limit: int, backoff_s: float = 0.25,
    ) -> None:
        """Keep `concurrency` clients submitting `make(i)` until `stop` is set, as steady traffic
        during a fault. Each client starts a request every `interval_s` at most, so the load is
        the scenario's choice, not the gateway's speed: a fast gateway does not use up `limit`
        before the fault is over. A client refused waits `backoff_s`."""
        numbers = iter(range(limit))

        async def client() -> None:
            for i in numbers:
                if stop.is_set():
                    return
                started = time.monotonic()
                body, expect = make(i)
                refused = (await self.submit(body, expect)).task_id is None
                pause = max(backoff_s if refused else 0.0,
                            interval_s - (time.monotonic() - started))
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), pause)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        if not stop.is_set():
            raise AssertionError(f"all {limit} submissions made before the scenario ended")

    def track(self, task_id: str, expect: Expect) -> None:
        """A task accepted some other way (a confirmed direct publish)."""
        self.begin()
        self.row.submitted += 1
        self.row.accepted += 1
        self.expected[task_id] = expect

    def refused_but_run(self) -> int:
        """Refused submissions whose webhook was called all the same (the publish reached the
        broker but its confirmation did not reach the gateway)."""
        called = {f"http://127.0.0.1:{self.receiver.port}{d.path}"
                  for d in list(self.receiver.deliveries)}
        return sum(1 for s in self.submissions if s.task_id is None and s.url in called)

    def other_answers(self) -> Counter[str]:
        """Submission answers that were neither accepted nor 503."""
        return Counter(str(s.code or s.error) for s in self.submissions
                       if s.task_id is None and s.code != 503)

    # -- polling ----------------------------------------------------------------------------

    def _see(self, task_id: str, status: Status, attempt: int, read_at: float) -> Final:
        """Record one observation made by a read sent at `read_at`. A lower rank than a read
        that had already answered when this one was sent is a regression (reads in flight
        together may answer in any order)."""
        seen = Final(status, attempt)
        position = rank(status, attempt)
        top, top_answered_at = self._top.get(task_id, (-1, 0.0))
        if position < top and read_at > top_answered_at:
            self.regressed.add(task_id)
            self.row.example(f"regression {task_id}: {status} attempt {attempt} after rank {top}")
        if position > top:
            self._top[task_id] = (position, time.monotonic())
        if position >= top or read_at > top_answered_at:
            self.final[task_id] = seen
        return seen

    async def observe(self, task_id: str) -> Final | None:
        """One `GET /tasks/{id}`, as a user polls; records the answer."""
        async with self._polls:
            read_at = time.monotonic()
            try:
                answer = await self.http.get(f"/tasks/{task_id}", timeout=15.0)
            except httpx.HTTPError as error:
                self.poll_answers[type(error).__name__] += 1
                return None
        self.poll_answers[str(answer.status_code)] += 1
        if answer.status_code == 404 and task_id in self.answered_202:
            self.not_found_after_202.add(task_id)  # read your writes says: never
        if answer.status_code != 200:
            return None
        view = answer.json()
        return self._see(task_id, Status(view["status"]), int(view["attempt"]), read_at)

    async def read_model_round(self) -> bool:
        """Read every pending task's status from the read model in bulk (what the API would
        answer, without loading the gateway); True when none is pending any more."""
        pending = self.pending()
        read_at = time.monotonic()
        try:
            for start in range(0, len(pending), 500):
                chunk = pending[start:start + 500]
                async for document in self.tasks.find(
                        {"_id": {"$in": chunk}}, {"status": 1, "attempt": 1}):
                    self._see(str(document["_id"]), Status(document["status"]),
                              int(document["attempt"]), read_at)
        except PyMongoError:
            self.read_model_errors += 1
        return not self.pending()

    def pending(self) -> list[str]:
        """Tracked tasks that must reach a status and have not shown a terminal one yet."""
        return [task_id for task_id, expect in self.expected.items()
                if expect.status is not None and not _terminal(self.final.get(task_id))]

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """While the scenario runs: read pending statuses in bulk every 0.2 s, and poll them
        over HTTP a few at a time, round-robin, as clients would."""

        # Cancelling alone is not enough to stop them: PyMongo can turn a cancellation that
        # lands inside a read into an error, which `read_model_round` counts and goes on from
        # (tests/cluster saw a watcher outlive its scenario that way, and the scenario hang).
        stopping = asyncio.Event()

        async def bulk() -> None:
            while not stopping.is_set():
                await self.read_model_round()
                await asyncio.sleep(_BULK_INTERVAL_S)

        async def http() -> None:
            while not stopping.is_set():
                pending = self.pending()
                for start in range(0, len(pending), _HTTP_POLLERS):
                    batch = pending[start:start + _HTTP_POLLERS]
                    await asyncio.gather(*(self.observe(task_id) for task_id in batch))
                await asyncio.sleep(_HTTP_INTERVAL_S)

        watchers = [asyncio.create_task(bulk()), asyncio.create_task(http())]
        try:
            yield
        finally:
            stopping.set()
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def converge(
        self, timeout_s: float, settle: Callable[[], Awaitable[object]] | None = None,
    ) -> bool:
        """Wait until every tracked task shows a terminal status, then (after `settle`, e.g.
        until late events are consumed) GET each one: a user's final answer, where a terminal
        status must not have moved. The row gets the counts either way."""
        converged = True
        try:
            await eventually(self.read_model_round, timeout_s=timeout_s,
                             interval_s=_BULK_INTERVAL_S, what="every task to end")
        except AssertionError:
            converged = False
            stuck = {task_id: self.final.get(task_id) for task_id in self.pending()[:3]}
            self.row.note(f"not converged after {timeout_s:.0f}s: {len(self.pending())} "
                          f"task(s) without a terminal status, e.g. {stuck}")
        if converged and self.started is not None:
            self.row.converge_s = time.monotonic() - self.started
        if settle is not None:
            await settle()
        await self.final_sweep()
        self.tally()
        return converged

    async def final_sweep(self) -> None:
        gate = asyncio.Semaphore(_FINAL_CONCURRENCY)

        async def one(task_id: str) -> None:
            async with gate:
                await self.observe(task_id)

        await asyncio.gather(*(one(task_id) for task_id in self.expected))

    def effects(self) -> dict[str, int]:
        return dict(self.receiver.by_task)

    def tally(self) -> None:
        count(self.row, self.expected, self.final, self.effects(), self.regressed)
        odd = {code: n for code, n in self.poll_answers.items() if code not in ("200", "404")}
        if odd:
            self.row.note(f"answers to GET /tasks/{{id}} besides 200/404: "
                          f"{dict(sorted(odd.items()))}")
        if self.read_model_errors:
            self.row.note(f"{self.read_model_errors} bulk read(s) of the read model failed")
        self.row.not_found_after_202 = len(self.not_found_after_202)
        if self.not_found_after_202:
            self.row.note(f"{len(self.not_found_after_202)} task(s) answered 404 after their 202")
        other = self.other_answers()
        if other:
            self.row.note(f"submissions neither accepted nor 503: {dict(other)}")


TrackerFactory = Callable[..., TaskTracker]


async def until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Wait, by polling with a deadline, until `condition()` holds."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout_s=timeout_s, interval_s=0.05, what=what)


def assert_passed(row: Row, converged: bool, logs: str) -> None:
    """The scenario's verdict: converged, nothing lost, no wrong status, no regression, no
    404 after a 202, every POST accepted unless the scenario provoked its refusal."""
    open_windows = [window.why for window in row.open_windows()]
    summary = (f"lost {row.lost}, status wrong {row.status_wrong}, regressions "
               f"{row.regressions}, 404 after 202 {row.not_found_after_202}, failed/dead "
               f"{row.failed_dead} ({row.failed_dead_expected} expected), unexpected POST "
               f"answers {row.unexpected_answers}, refusal windows left open {open_windows}; "
               f"{'; '.join(row.examples)}")
    assert converged, f"did not converge: {summary}\n{logs}"
    assert row.passed, f"{summary}\n{logs}"


def _terminal(seen: Final | None) -> bool:
    return seen is not None and seen.status is not None and seen.status.is_terminal
