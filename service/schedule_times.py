"""When a schedule runs: the next due time of a cron expression (in its time zone) or of an
interval, and what a due time that was missed turns into under the schedule's catch-up policy.

Pure: every function takes `now`, so tests drive it with any clock.

Daylight saving time (cron only; an interval counts real seconds): a cron expression is read in
the schedule's local wall-clock time. A local time that does not exist (the hour skipped in
spring: 02:30 in Europe/Paris) runs at the first instant after it (03:00); a local time that
occurs twice (the hour repeated in autumn) runs once, at its first occurrence, so `*/30 * * * *`
runs nothing during the repeated hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

CatchUp = Literal["skip", "last"]


class InvalidTiming(ValueError):
    """A cron expression that is not five valid fields, an unknown time zone, or neither or
    both of cron and interval; `field` names the one at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Timing:
    """When a schedule is due: `cron` (5 fields, read in `timezone`) or every `interval_s`
    seconds counted from `anchor`."""

    cron: str | None
    interval_s: float | None
    timezone: str
    anchor: datetime

    def check(self) -> None:
        """Raise InvalidTiming unless exactly one of cron and interval is set and valid."""
        if (self.cron is None) == (self.interval_s is None):
            raise InvalidTiming("interval_s", "give exactly one of cron and interval_s")
        zone(self.timezone)
        if self.cron is not None and (len(self.cron.split()) != 5
                                      or not croniter.is_valid(self.cron)):
            raise InvalidTiming("cron", f"not a 5-field cron expression: {self.cron!r}")
        if self.cron is not None and not _ever_fires(self.cron):
            raise InvalidTiming("cron", f"{self.cron!r} names no date that exists "
                                        "(such as 31 February): it would never run")
        if self.interval_s is not None and self.interval_s <= 0:
            raise InvalidTiming("interval_s", "interval_s must be positive")

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment`, in UTC."""
        if self.interval_s is not None:
            elapsed = (moment - self.anchor).total_seconds()
            steps = max(0, math.floor(elapsed / self.interval_s) + 1)
            due = self.anchor + timedelta(seconds=steps * self.interval_s)
            # Float rounding must never give a time at or before `moment`.
            while due <= moment:
                due += timedelta(seconds=self.interval_s)
            return due.astimezone(UTC)
        assert self.cron is not None
        tz = zone(self.timezone)
        times = croniter(self.cron, moment.astimezone(tz))
        while True:
            following: datetime = times.get_next(datetime)
            if not _repeated(following.astimezone(tz)):
                return following.astimezone(UTC)

    def first_at_or_after(self, moment: datetime) -> datetime:
        """The first due time at or after `moment`, in UTC (a datetime's resolution is a
        microsecond: nothing lies between `moment` less one and `moment`)."""
        return self.next_after(moment - timedelta(microseconds=1))

    def latest_at_or_before(self, moment: datetime, since: datetime) -> datetime:
        """The last due time at or before `moment`, walking forward from `since` (a due
        time at or before `moment`)."""
        if self.interval_s is not None:
            elapsed = (moment - self.anchor).total_seconds()
            steps = math.floor(elapsed / self.interval_s)
            latest = self.anchor + timedelta(seconds=steps * self.interval_s)
            return max(latest, since).astimezone(UTC)
        latest = since
        following = self.next_after(latest)
        while following <= moment:
            latest, following = following, self.next_after(following)
        return latest


@dataclass(frozen=True)
class Decision:
    """What to do with a schedule's due time `slot`: run the task for `run_at` (None: run
    nothing), then wait for `next_run_at`."""

    slot: datetime
    run_at: datetime | None
    next_run_at: datetime


def decide(timing: Timing, catch_up: CatchUp, slot: datetime, now: datetime,
           grace: timedelta) -> Decision:
    """What the oldest pending due time `slot` (<= now) turns into.

    A due time is on time if at most `grace` has passed since it: it runs, once. Older, it was
    missed (no scheduler reached it in time). Every on-time due time runs, one by one, however
    late `slot` is; the missed ones follow the catch-up policy: `skip` runs none of them, `last`
    runs the latest missed one once unless an on-time one runs (a run at most `grace` old
    already is the catch-up run), and none when it does.
    """
    if now - slot <= grace:
        return Decision(slot, slot, next_due(timing, slot, slot, now, grace))
    run_at: datetime | None = None
    if catch_up == "last" and timing.first_at_or_after(now - grace) > now:
        run_at = timing.latest_at_or_before(now, slot)
    return Decision(slot, run_at, next_due(timing, slot, run_at, now, grace))


def next_due(timing: Timing, slot: datetime, run_at: datetime | None, now: datetime,
             grace: timedelta) -> datetime:
    """Where a schedule goes once its due time `slot` was decided (run for `run_at`, or
    nothing; the claim's winner decided, every scheduler follows). After a run of `slot`
    itself, the due time after it, whatever its age: the next decision judges that one. After
    anything else, the first due time not older than `grace`: the missed ones before it were
    settled by this decision, and walking them one by one would take a claim each."""
    if run_at == slot:
        return timing.next_after(slot)
    return max(timing.next_after(run_at or slot), timing.first_at_or_after(now - grace))


def _ever_fires(cron: str) -> bool:
    # croniter gives up on a day that no month has (`0 0 31 2 *`) after a bounded search,
    # about a millisecond; a valid expression finds its next date far sooner.
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def _repeated(local: datetime) -> bool:
    """Whether `local` is the second occurrence of a wall-clock time that occurs twice (the
    hour repeated when clocks go back): croniter would run it a second time."""
    wall = local.replace(tzinfo=None)
    first = wall.replace(tzinfo=local.tzinfo, fold=0).utcoffset()
    second = wall.replace(tzinfo=local.tzinfo, fold=1).utcoffset()
    return first != second and local.utcoffset() == second


def zone(name: str) -> ZoneInfo:
    """The time zone of this IANA name; InvalidTiming if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidTiming("timezone", f"unknown time zone {name!r}") from error
