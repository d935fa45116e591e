"""The progress throttle: a handler's reports are coalesced, the latest wins, at most one per
window reaches the broker, and a failed publish is only logged."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from consumers.progress import ProgressReporter, Report

WINDOW_S = 0.25


class FakeClock:
    """Time moves only when the test moves it; `sleep` waits for it."""

    def __init__(self) -> None:
        self.now = 100.0
        self._sleepers: list[tuple[float, asyncio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.Event()
        self._sleepers.append((self.now + seconds, woken))
        await woken.wait()

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, woken in self._sleepers:
            if deadline <= self.now:
                woken.set()
        self._sleepers = [(d, w) for d, w in self._sleepers if not w.is_set()]
        await settle()  # let the sender run what is now due


class Published(list[tuple[float, float, str | None]]):
    """(clock time, fraction, message) of each publish."""


def reporter(clock: FakeClock, published: Published) -> ProgressReporter:
    async def publish(report: Report) -> None:
        published.append((clock.now, report.fraction, report.message))

    return ProgressReporter(publish, min_interval_s=WINDOW_S, clock=clock, sleep=clock.sleep)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_reports_made_before_the_sender_runs_are_coalesced_into_the_latest() -> None:
    clock, published = FakeClock(), Published()
    progress = reporter(clock, published)

    for step in range(1, 4):
        progress.report(step / 10, f"step {step}")
    await settle()

    assert published == [(100.0, 0.3, "step 3")]
    await progress.close()


async def test_a_report_within_the_window_waits_for_it_and_the_latest_wins() -> None:
    clock, published = FakeClock(), Published()
    progress = reporter(clock, published)
    progress.report(0.1)
    await settle()

    await clock.advance(0.1)
    progress.report(0.2)
    progress.report(0.3, "latest")
    await settle()
    assert len(published) == 1  # the window is not open yet

    await clock.advance(0.15)
    assert published[1:] == [(100.25, 0.3, "latest")]
    await progress.close()


async def test_a_handler_reporting_all_the_time_gets_at_most_one_publish_per_window() -> None:
    clock, published = FakeClock(), Published()
    progress = reporter(clock, published)

    for step in range(1000):  # 10 s of reports, one every 10 ms
        progress.report(step / 1000, f"step {step}")
        await clock.advance(0.01)
    await clock.advance(WINDOW_S)

    times = [at for at, _, _ in published]
    assert all(later - earlier >= WINDOW_S - 1e-9 for earlier, later in itertools.pairwise(times))
    assert len(published) <= 10 / WINDOW_S + 1
    assert len(published) >= 10 / WINDOW_S - 1  # and it does keep reporting
    assert published[-1][1:] == (0.999, "step 999")  # the last report is not lost
    await progress.close()


async def test_one_publish_at_a_time_reports_meanwhile_coalesce() -> None:
    clock = FakeClock()
    release = asyncio.Event()
    sent: list[float] = []

    async def slow_publish(report: Report) -> None:
        sent.append(report.fraction)
        await release.wait()

    progress = ProgressReporter(slow_publish, min_interval_s=WINDOW_S, clock=clock,
                                sleep=clock.sleep)
    progress.report(0.1)
    await settle()
    for step in range(2, 10):
        progress.report(step / 10)
        await clock.advance(1.0)  # many windows pass while the first publish is in flight

    assert sent == [0.1]
    release.set()
    await settle()
    assert sent == [0.1, 0.9]
    await progress.close()


async def test_close_drops_what_was_not_sent_and_later_reports_are_ignored() -> None:
    clock, published = FakeClock(), Published()
    progress = reporter(clock, published)
    progress.report(0.1)
    await settle()
    progress.report(0.5)  # waits for the window

    await progress.close()
    progress.report(0.9)
    await clock.advance(1.0)

    assert [fraction for _, fraction, _ in published] == [0.1]


async def test_a_failed_publish_is_logged_and_later_reports_still_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    sent: list[float] = []

    async def flaky(report: Report) -> None:
        if not sent:
            sent.append(-1.0)
            raise ConnectionError("broker away")
        sent.append(report.fraction)

    progress = ProgressReporter(flaky, min_interval_s=WINDOW_S, clock=clock, sleep=clock.sleep,
                                label="task t-1")
    with caplog.at_level(logging.WARNING, logger="consumers.progress"):
        progress.report(0.1)
        await settle()
        progress.report(0.2)
        await clock.advance(WINDOW_S)

    assert sent == [-1.0, 0.2]
    assert "progress of task t-1 not published" in caplog.text
    await progress.close()


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
async def test_a_fraction_outside_0_to_1_is_a_bug_in_the_handler(fraction: float) -> None:
    progress = reporter(FakeClock(), Published())

    with pytest.raises(ValueError, match="fraction from 0 to 1"):
        progress.report(fraction)


async def test_a_long_message_is_cut_to_what_a_progress_event_holds() -> None:
    clock, published = FakeClock(), Published()
    progress = reporter(clock, published)

    progress.report(0.5, "x" * 1000)
    await settle()

    assert published[0][2] == "x" * 200
    await progress.close()
