"""The `sleep` handler reports progress at each whole second of a sleep of 2 s or more, the
last second included however little is left after it, and sleeps no less than asked."""

from __future__ import annotations

import time

import pytest

from infra.runtime.settings.system import SystemSettings
from taskproc.context import TaskContext
from taskproc.tasks.sleep import SleepPayload, sleep


class Reports:
    def __init__(self) -> None:
        self.made: list[tuple[float, str | None, float]] = []  # fraction, message, when
        self.start = time.monotonic()

    async def __call__(self, fraction: float, message: str | None = None) -> None:
        self.made.append((fraction, message, time.monotonic() - self.start))


@pytest.mark.parametrize(("seconds", "expected"), [
    (2.5, ["slept 0 of 2.5 s", "slept 1 of 2.5 s", "slept 2 of 2.5 s"]),
    (2.0, ["slept 0 of 2 s", "slept 1 of 2 s"]),
])
async def test_a_report_comes_at_each_whole_second(seconds: float, expected: list[str]) -> None:
    reports = Reports()
    ctx: TaskContext[None] = TaskContext(task_id="t-1", task_type="sleep", tenant="default",
                                         attempt=1, run=1,
                                         settings=SystemSettings(), clients=None,
                                         report_progress=reports)

    result = await sleep(SleepPayload(seconds=seconds), ctx)

    took = time.monotonic() - reports.start
    assert result == {"slept_s": seconds}
    assert [message for _, message, _ in reports.made] == expected
    assert [fraction for fraction, _, _ in reports.made] == [n / seconds
                                                             for n in range(len(expected))]
    # Each at its second, give or take a scheduler's delay on a busy machine.
    assert all(abs(when - n) < 0.3 for n, (_, _, when) in enumerate(reports.made))
    assert seconds <= took < seconds + 0.5
