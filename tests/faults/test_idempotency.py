"""Duplicate submissions under one Idempotency-Key: one task id, one run; a different body under
the same key is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from contracts.statuses import Status
from tests.faults.scoreboard import Expect, Row, Submission
from tests.faults.system import System
from tests.faults.tracking import TaskTracker, TrackerFactory, assert_passed, until, webhook
from tests.support.receivers import WebhookReceiver

NewRow = Callable[[str], Row]
KEYS = 40
COPIES = 10
IN_PROGRESS_RETRIES = 10


async def submit_keyed(
    tracker: TaskTracker, body: Mapping[str, Any], key: str, retried: list[int],
    sent: asyncio.Event | None = None,
) -> Submission:
    """POST with the key; a 409 (the same key still in progress) is retried after its
    Retry-After, as a client should. `sent` is set once the first request is sent. Any answer
    but acceptance or that 409 fails the row."""
    for attempt in range(IN_PROGRESS_RETRIES):
        answer = await tracker.submit(body, Expect(Status.SUCCEEDED),
                                      headers={"Idempotency-Key": key},
                                      sent=sent if attempt == 0 else None, allowed=(409,))
        if answer.code != 409:
            return answer
        retried.append(1)
        await asyncio.sleep(1.0)  # the Retry-After of a 409: the client's pause, not a wait
    return answer


def all_set(flags: list[asyncio.Event]) -> bool:
    return all(flag.is_set() for flag in flags)


async def test_duplicate_submissions_with_one_key(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
) -> None:
    """40 keys, each sent 10 times at once with the same body, then once more after the task
    ran, then once with another body: one task id and one webhook call per key, 422 for the
    other body. "At once" is made so: the gateway is paused until every copy of a wave is in
    its sockets, so however fast it answers, it reads them together."""
    row = new_row(f"12. duplicate submissions, one Idempotency-Key ({COPIES} at once, {KEYS} keys)")
    url = await system.start()
    [gateway] = [process for process in system.processes if process.name == "gateway"]
    tracker = tracker_for(row, url)
    keys = [f"s12-{uuid.uuid4()}" for _ in range(KEYS)]
    body = {key: webhook(receiver.url(f"/s12/{key}")) for key in keys}
    retried: list[int] = []

    async with tracker.watching():
        answers: dict[str, list[Submission]] = {}
        for wave in range(0, KEYS, 5):
            batch = keys[wave:wave + 5]
            wave_keys = [key for key in batch for _ in range(COPIES)]
            sent = [asyncio.Event() for _ in wave_keys]
            copies = asyncio.gather(*(submit_keyed(tracker, body[key], key, retried, flag)
                                      for key, flag in zip(wave_keys, sent, strict=True)))
            try:
                with gateway.paused():
                    await until(partial(all_set, sent), timeout_s=30,
                                what="every copy of the wave sent to the paused gateway")
                results = await copies
            finally:
                copies.cancel()
            for i, key in enumerate(batch):
                answers[key] = list(results[i * COPIES:(i + 1) * COPIES])
        converged = await tracker.converge(timeout_s=60)
        later = {key: await submit_keyed(tracker, body[key], key, retried) for key in keys}
        # Another body under a used key: the 422 is what this request asks for.
        other = {key: await tracker.submit(webhook(receiver.url(f"/s12/{key}/other")),
                                           Expect(Status.SUCCEEDED),
                                           headers={"Idempotency-Key": key}, allowed=(422,))
                 for key in keys}

    ids = {key: {a.task_id for a in answers[key] + [later[key]]} for key in keys}
    runs = {key: sum(receiver.by_task.get(task_id or "", 0) for task_id in ids[key])
            for key in keys}
    split = [key for key in keys if len(ids[key]) != 1 or None in ids[key]]
    rerun = [key for key in keys if runs[key] != 1]
    not_refused = [key for key in keys if other[key].code != 422]
    row.duplicate_effects = sum(max(0, runs[key] - 1) for key in keys)
    row.note(f"keys answered with more than one task id: {len(split)}; run other than once: "
             f"{len(rerun)}; other body not 422: {len(not_refused)} "
             f"(answers {sorted({str(other[k].code) for k in keys})}); 409 retried: "
             f"{len(retried)}")
    assert not split, f"{len(split)} key(s) got several task ids, e.g. {ids[split[0]]}"
    assert not rerun, f"{len(rerun)} key(s) ran other than once: {[runs[k] for k in rerun]}"
    assert not not_refused, "the same key with another body must answer 422"
    assert_passed(row, converged, system.logs())
