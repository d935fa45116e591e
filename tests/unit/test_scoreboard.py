"""The fault scoreboard's rule for `POST /tasks` answers: every submission is accepted unless the
scenario provoked its refusal. Fabricated answers, no services: a row where every POST answered
503 used to pass (nothing accepted, so nothing lost); it must fail."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from pymongo.asynchronous.collection import AsyncCollection

from contracts.statuses import Status
from tests.faults.scoreboard import Expect, Final, Row, Submission, count
from tests.faults.tracking import TaskTracker, webhook
from tests.support.receivers import Delivery, WebhookReceiver

SUCCEEDS = Expect(Status.SUCCEEDED)


def refused(code: int | None, sent_at: float, latency_s: float = 0.1,
            allowed: frozenset[int] = frozenset()) -> Submission:
    error = "ConnectError()" if code is None else None
    return Submission(code, None, sent_at, latency_s, error=error, allowed=allowed)


def accepted(task_id: str, sent_at: float) -> Submission:
    return Submission(202, task_id, sent_at, 0.1)


def answer_all(row: Row, submissions: list[Submission]) -> None:
    for submission in submissions:
        row.submitted += 1
        row.answered(submission)


def test_a_row_where_every_post_answered_503_fails() -> None:
    row = Row("every POST 503")
    answer_all(row, [refused(503, sent_at=float(i)) for i in range(200)])

    count(row, expected={}, final={}, effects={}, regressed=[])

    # The counting columns alone would call this a pass: nothing was accepted, nothing lost.
    assert (row.lost, row.status_wrong, row.regressions, row.failed_dead) == (0, 0, 0, 0)
    assert (row.submitted, row.accepted, row.refused) == (200, 0, 200)
    assert row.unexpected_answers == 200
    assert not row.passed


def test_a_row_where_every_post_was_accepted_and_ran_passes() -> None:
    row = Row("all accepted")
    answer_all(row, [accepted(f"t{i}", sent_at=float(i)) for i in range(3)])

    count(row, expected={f"t{i}": SUCCEEDS for i in range(3)},
          final={f"t{i}": Final(Status.SUCCEEDED, 1) for i in range(3)},
          effects={f"t{i}": 1 for i in range(3)}, regressed=[])

    assert row.unexpected_answers == 0
    assert row.passed


def test_503s_inside_a_refusal_window_pass_and_one_after_it_fails() -> None:
    row = Row("broker away")
    outage = row.expect_refusals(503, why="broker stopped", at=10.0)
    answer_all(row, [refused(503, sent_at=9.5, latency_s=2.0),  # in flight when it began
                     refused(503, sent_at=12.0), refused(503, sent_at=20.0)])
    outage.close(at=20.0)
    assert row.unexpected_answers == 0

    answer_all(row, [refused(503, sent_at=20.5)])

    assert row.unexpected_answers == 1
    assert not row.passed


def test_a_refusal_answered_before_the_window_opened_fails() -> None:
    row = Row("too early")
    answer_all(row, [refused(503, sent_at=1.0, latency_s=0.5)])
    row.expect_refusals(503, why="broker stopped", at=2.0).close(at=3.0)

    assert row.unexpected_answers == 1


def test_a_window_covers_only_its_codes_and_never_a_missing_answer() -> None:
    row = Row("other answers during the outage")
    outage = row.expect_refusals(503, why="broker stopped", at=0.0)
    answer_all(row, [refused(500, sent_at=1.0), refused(None, sent_at=1.0)])
    outage.close(at=5.0)

    assert row.unexpected_answers == 2
    assert not row.passed


def test_a_refusal_window_left_open_fails_the_row() -> None:
    row = Row("never recovered")
    row.expect_refusals(503, why="broker stopped", at=0.0)
    answer_all(row, [refused(503, sent_at=1.0)])

    assert row.unexpected_answers == 0
    assert not row.passed


def test_an_answer_the_request_itself_allows_passes_and_the_same_one_unasked_fails() -> None:
    row = Row("idempotency")
    answer_all(row, [refused(409, sent_at=1.0, allowed=frozenset({409})),
                     refused(422, sent_at=2.0, allowed=frozenset({422}))])
    assert row.unexpected_answers == 0

    answer_all(row, [refused(409, sent_at=3.0)])

    assert row.unexpected_answers == 1


@dataclass
class NoDeliveries:
    """Stands in for the webhook receiver: nothing was delivered."""

    port: int = 9
    deliveries: list[Delivery] = field(default_factory=list)
    by_task: Counter[str] = field(default_factory=Counter)


async def test_the_tracker_fails_a_scenario_whose_gateway_answers_503_to_every_post() -> None:
    async def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "RabbitMQ did not confirm in time"})

    row = Row("9. permanent failures (404), gateway refusing everything")
    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway),
                                 base_url="http://gateway") as http:
        tracker = TaskTracker(row, http, cast(WebhookReceiver, NoDeliveries()),
                              cast(AsyncCollection[dict[str, Any]], None))
        await tracker.submit_all((webhook(f"http://peer/{i}"), Expect(Status.FAILED))
                                 for i in range(20))
    tracker.tally()

    assert tracker.pending() == []  # "converged" at once: nothing to wait for
    assert (row.submitted, row.accepted, row.refused, row.lost) == (20, 0, 20, 0)
    assert row.unexpected_answers == 20
    assert not row.passed
