"""When schedules are due: cron in a time zone (DST included), intervals, catch-up policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.schedule_times import CatchUp, InvalidTiming, Timing, decide, next_due

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=5)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def cron(expression: str, timezone: str = "UTC") -> Timing:
    return Timing(expression, None, timezone, anchor=ANCHOR)


def every(seconds: float) -> Timing:
    return Timing(None, seconds, "UTC", anchor=ANCHOR)


def test_cron_is_read_in_its_time_zone() -> None:
    weekdays_at_nine = cron("0 9 * * 1-5", "Europe/Paris")
    # Monday 30 Nov 2026 09:03 UTC is 10:03 in Paris: the next is Tuesday 09:00 Paris, 08:00 UTC.
    assert weekdays_at_nine.next_after(at(2026, 11, 30, 9, 3)) == at(2026, 12, 1, 8, 0)
    # In summer Paris is UTC+2.
    assert weekdays_at_nine.next_after(at(2026, 7, 1, 0, 0)) == at(2026, 7, 1, 7, 0)


def test_cron_next_is_strictly_after() -> None:
    assert cron("*/5 * * * *").next_after(at(2026, 3, 1, 10, 5)) == at(2026, 3, 1, 10, 10)


def test_a_local_time_skipped_in_spring_runs_at_the_first_instant_after() -> None:
    nightly = cron("30 2 * * *", "Europe/Paris")
    # 29 March 2026: 02:00 Paris jumps to 03:00 (01:00 UTC).
    assert nightly.next_after(at(2026, 3, 28, 12)) == at(2026, 3, 29, 1, 0)


def test_a_local_time_repeated_in_autumn_runs_once() -> None:
    nightly = cron("30 2 * * *", "Europe/Paris")
    first = nightly.next_after(at(2026, 10, 24, 12))
    assert first == at(2026, 10, 25, 0, 30)  # 02:30 summer time
    assert nightly.next_after(first) == at(2026, 10, 26, 1, 30)  # not 02:30 winter time


def test_interval_counts_from_its_anchor() -> None:
    assert every(300).next_after(ANCHOR) == ANCHOR + timedelta(seconds=300)
    assert every(300).next_after(ANCHOR + timedelta(seconds=301)) == ANCHOR + timedelta(
        seconds=600)
    assert every(0.5).next_after(ANCHOR + timedelta(seconds=10)) == ANCHOR + timedelta(
        seconds=10.5)


@pytest.mark.parametrize(("expression", "interval", "timezone"), [
    ("* * * *", None, "UTC"), ("* * * * * *", None, "UTC"), ("61 * * * *", None, "UTC"),
    ("* * * * *", None, "Mars/Olympus"), (None, None, "UTC"), ("* * * * *", 5.0, "UTC"),
])
def test_invalid_timings_are_refused(
    expression: str | None, interval: float | None, timezone: str,
) -> None:
    with pytest.raises(InvalidTiming):
        Timing(expression, interval, timezone, anchor=ANCHOR).check()


def test_an_on_time_due_time_runs_and_the_next_follows_it() -> None:
    timing = every(60)
    slot = ANCHOR + timedelta(minutes=10)
    decision = decide(timing, "skip", slot, slot + timedelta(seconds=2), GRACE)
    assert decision.run_at == slot
    assert decision.next_run_at == slot + timedelta(minutes=1)


def test_skip_runs_nothing_for_missed_due_times_and_waits_for_the_next_future_one() -> None:
    timing = every(60)
    slot = ANCHOR + timedelta(minutes=10)
    now = slot + timedelta(minutes=5, seconds=30)  # down for five due times
    decision = decide(timing, "skip", slot, now, GRACE)
    assert decision.run_at is None
    assert decision.next_run_at == ANCHOR + timedelta(minutes=16)


def test_last_runs_the_most_recent_missed_due_time_once() -> None:
    timing = every(60)
    slot = ANCHOR + timedelta(minutes=10)
    now = slot + timedelta(minutes=5, seconds=30)
    decision = decide(timing, "last", slot, now, GRACE)
    assert decision.run_at == ANCHOR + timedelta(minutes=15)
    assert decision.next_run_at == ANCHOR + timedelta(minutes=16)


def test_last_with_cron_finds_the_most_recent_missed_time() -> None:
    hourly = cron("0 * * * *")
    slot = at(2026, 5, 1, 3)
    decision = decide(hourly, "last", slot, at(2026, 5, 1, 7, 20), GRACE)
    assert decision.run_at == at(2026, 5, 1, 7)
    assert decision.next_run_at == at(2026, 5, 1, 8)


@pytest.mark.parametrize("catch_up", ["skip", "last"])
def test_a_missed_due_time_gives_way_to_the_first_one_within_the_grace(
    catch_up: CatchUp,
) -> None:
    timing = every(1)
    slot = ANCHOR + timedelta(seconds=1)
    now = ANCHOR + timedelta(seconds=12, milliseconds=500)  # 8 to 12 are within 5 s of now
    decision = decide(timing, catch_up, slot, now, GRACE)
    assert decision.run_at is None  # `last` too: 8 to 12 run, so no missed one does
    assert decision.next_run_at == ANCHOR + timedelta(seconds=8)
    on_time = decide(timing, "skip", decision.next_run_at, now, GRACE)
    assert on_time.run_at == ANCHOR + timedelta(seconds=8)
    assert on_time.next_run_at == ANCHOR + timedelta(seconds=9)


def test_a_due_time_exactly_grace_old_is_on_time() -> None:
    timing = every(1)
    now = ANCHOR + timedelta(seconds=10)
    decision = decide(timing, "skip", ANCHOR + timedelta(seconds=2), now, GRACE)
    assert decision.next_run_at == ANCHOR + timedelta(seconds=5)
    assert decide(timing, "skip", decision.next_run_at, now, GRACE).run_at == decision.next_run_at


def test_after_a_late_run_of_its_own_due_time_the_next_one_is_judged_on_its_own() -> None:
    # A run claimed on time and submitted late (its scheduler died): the schedule moves to the
    # due time after it, which the next decision calls on time or missed.
    timing = every(60)
    slot = ANCHOR + timedelta(minutes=1)
    later = slot + timedelta(minutes=3)
    assert next_due(timing, slot, slot, later, GRACE) == slot + timedelta(minutes=1)
    assert next_due(timing, slot, None, later, GRACE) == later  # due now: within the grace
