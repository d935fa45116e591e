"""Schedules end to end: the real gateway, workers, projector and `python -m scheduler`
processes on real RabbitMQ and MongoDB.

The order of every step is explicit: a scheduler is started and ready (its log says so) before
a schedule is due; for catch-up it is stopped (its process has exited), time passes, then it is
started again.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from infra.mongodb.client import mongo_client
from infra.runtime.settings.system import SystemSettings
from service.schedules import run_key, run_task_id
from tests.e2e.conftest import Api, System, stop_all, system_env
from tests.support.keys import bearer, issue_key
from tests.support.processes import ServiceProcess
from tests.support.receivers import SmtpSink
from tests.support.services import Backends
from tests.support.waiting import eventually

# A due time more than this late counts as missed.
GRACE_S = 2
# How long a stopped scheduler stays down: several 1 s due times, well past the grace.
DOWNTIME_S = 5
# The `last` schedule's interval: longer than the grace, so a restart may find no due time
# within it.
LAST_INTERVAL_S = 3


@pytest.fixture
def scheduler_env(services: Backends, smtp_sink: SmtpSink) -> dict[str, str]:
    return system_env(services, smtp_sink, SCHEDULER_GRACE_S=str(GRACE_S),
                      SCHEDULER_MAX_SLEEP_S="0.2")


@pytest.fixture
def schedulers(scheduler_env: dict[str, str], module_log_dir: Path,
               system: System) -> Iterator[list[ServiceProcess]]:
    """Start schedulers with `start(name)`; every one still running is stopped after."""
    started: list[ServiceProcess] = []
    yield started
    codes = stop_all([process for process in started if process.running()])
    assert all(code == 0 for code in codes.values()), codes


def start_scheduler(started: list[ServiceProcess], env: dict[str, str], log_dir: Path,
                    name: str) -> ServiceProcess:
    process = ServiceProcess(name, ["-m", "scheduler"], {**env, "WORKER_NAME": name},
                             log_dir).start()
    started.append(process)
    process.wait_for_log("running (looks for due schedules", timeout_s=30)
    return process


@pytest.fixture
async def mongo(settings: SystemSettings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    yield client
    await client.close()


async def create(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"task_type": "sleep", "payload": {"seconds": 0}, "interval_s": 1, **fields}
    answer = await http.post("/schedules", json=body)
    assert answer.status_code == 201, answer.text
    view: dict[str, Any] = answer.json()
    return view


async def tasks_of(http: httpx.AsyncClient, schedule_id: str) -> list[dict[str, Any]]:
    answer = await http.get("/tasks", params={"label": f"schedule={schedule_id}",
                                              "limit": 200, "order": "asc"})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def runs_of(mongo: AsyncMongoClient[dict[str, Any]], settings: SystemSettings,
                  schedule_id: str) -> list[dict[str, Any]]:
    """The claimed due times of a schedule (collection `schedule_runs`), earliest first."""
    cursor = mongo[settings.mongodb_database]["schedule_runs"].find(
        {"schedule_id": {"$eq": schedule_id}}).sort("slot", 1)
    return [run async for run in cursor]


async def at_least(http: httpx.AsyncClient, schedule_id: str, count: int,
                   timeout_s: float = 30) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        found = await tasks_of(http, schedule_id)
        return found if len(found) >= count else None

    return await eventually(probe, timeout_s=timeout_s,
                            what=f"{count} tasks of schedule {schedule_id}")


async def test_an_interval_schedule_runs_as_labelled_tasks(
    http: httpx.AsyncClient, api: Api, schedulers: list[ServiceProcess],
    scheduler_env: dict[str, str], module_log_dir: Path,
) -> None:
    start_scheduler(schedulers, scheduler_env, module_log_dir, "scheduler-a")
    schedule = await create(http, labels=["e2e"])
    sid = schedule["schedule_id"]

    found = await at_least(http, sid, 3)
    await http.post(f"/schedules/{sid}/pause")

    for task in found[:3]:
        assert task["labels"] == [f"schedule={sid}", "e2e"]
        assert task["task_type"] == "sleep"
        await api.wait_for(task["task_id"], "succeeded")
    view = (await http.get(f"/schedules/{sid}")).json()
    assert view["last_task_id"] is not None
    assert view["paused"] is True


async def test_two_schedulers_at_once_submit_each_due_time_once(
    http: httpx.AsyncClient, api: Api, schedulers: list[ServiceProcess],
    scheduler_env: dict[str, str], module_log_dir: Path, settings: SystemSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    first = start_scheduler(schedulers, scheduler_env, module_log_dir, "scheduler-1")
    second = start_scheduler(schedulers, scheduler_env, module_log_dir, "scheduler-2")
    schedule = await create(http)
    sid = schedule["schedule_id"]

    await at_least(http, sid, 6)
    await http.post(f"/schedules/{sid}/pause")
    stop_all([first, second])
    runs = await runs_of(mongo, settings, sid)
    tasks = await tasks_of(http, sid)

    # One claim per due time, one task id per claim, due times a second apart with none left out.
    slots = [run["slot"] for run in runs]
    assert len(runs) >= 6
    assert all(later - earlier == timedelta(seconds=1)
               for earlier, later in itertools.pairwise(slots))
    assert [run["task_id"] for run in runs] == [run_task_id(run_key(sid, run["slot"]))
                                                for run in runs]
    assert all(run["submitted"] for run in runs)
    assert sorted(task["task_id"] for task in tasks) == sorted(run["task_id"] for run in runs)
    for task in tasks:
        done = await api.wait_for(task["task_id"], "succeeded")
        assert [step["status"] for step in done["history"]].count("queued") == 1
        assert done["attempt"] == 1
    # Each task was published by one scheduler, once.
    submitted = re.findall(r"submitted task (\S+)", first.log() + second.log())
    assert sorted(submitted) == sorted(run["task_id"] for run in runs)


async def test_catch_up_runs_every_due_time_within_the_grace_and_the_policy_decides_the_rest(
    http: httpx.AsyncClient, schedulers: list[ServiceProcess],
    scheduler_env: dict[str, str], module_log_dir: Path, settings: SystemSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    before = start_scheduler(schedulers, scheduler_env, module_log_dir, "scheduler-before")
    skip = (await create(http, catch_up="skip"))["schedule_id"]
    # Due every 3 s, longer than the grace: whether one falls within the grace of the restart
    # depends on when it comes, and each case has its assertion below.
    last = (await create(http, catch_up="last", interval_s=LAST_INTERVAL_S))["schedule_id"]
    await at_least(http, skip, 2)
    await at_least(http, last, 1)

    # Stop; let several due times pass; start again.
    stop_all([before])
    stopped = {sid: (await http.get(f"/schedules/{sid}")).json() for sid in (skip, last)}
    await asyncio.sleep(DOWNTIME_S)
    start_scheduler(schedulers, scheduler_env, module_log_dir, "scheduler-after")

    async def caught_up(sid: str) -> list[dict[str, Any]] | None:
        # From the first due time missed to one on time after the scheduler's first check.
        missed = datetime.fromisoformat(stopped[sid]["next_run_at"])
        runs = sorted(await runs_of(mongo, settings, sid), key=lambda run: run["slot"])
        after = [run for run in runs if run["slot"].timestamp() >= missed.timestamp()]
        if not after or not all(run["submitted"] for run in after):
            return None
        return after if after[-1]["slot"] > after[0]["claimed_at"] else None

    skipped = await eventually(lambda: caught_up(skip), timeout_s=30, what="skip caught up")
    ran_last = await eventually(lambda: caught_up(last), timeout_s=30, what="last caught up")
    for sid in (skip, last):
        await http.post(f"/schedules/{sid}/pause")
    grace = timedelta(seconds=GRACE_S)

    # skip: the missed due times ran nothing; every one within the grace of the first check
    # ran, once, and none after it was lost.
    first_check = skipped[0]["claimed_at"]
    assert skipped[0]["run_at"] is None
    assert skipped[0]["slot"] < first_check - grace
    on_time = skipped[1:]
    assert first_check - grace <= on_time[0]["slot"] < first_check - grace + timedelta(seconds=1)
    assert [run["slot"] - on_time[0]["slot"] for run in on_time] == [
        timedelta(seconds=n) for n in range(len(on_time))]
    assert all(run["run_at"] == run["slot"] for run in on_time)
    skip_tasks = {task["task_id"] for task in await tasks_of(http, skip)}
    assert {run["task_id"] for run in on_time} <= skip_tasks
    assert run_task_id(run_key(skip, skipped[0]["slot"])) not in skip_tasks

    # last: the latest missed due time runs once, unless one within the grace runs instead.
    first_check = ran_last[0]["claimed_at"]
    assert ran_last[0]["slot"] < first_check - grace
    following = ran_last[1]["slot"]
    if following <= first_check:
        assert first_check - grace <= following
        assert ran_last[0]["run_at"] is None
    else:
        latest_missed = ran_last[0]["run_at"]
        assert first_check - timedelta(seconds=LAST_INTERVAL_S) < latest_missed
        assert latest_missed < first_check - grace
        assert following - latest_missed == timedelta(seconds=LAST_INTERVAL_S)
        assert ran_last[0]["task_id"] in {task["task_id"] for task in await tasks_of(http, last)}


async def test_runs_over_the_rate_of_the_key_that_made_the_schedule_are_skipped(
    http: httpx.AsyncClient, schedulers: list[ServiceProcess], scheduler_env: dict[str, str],
    module_log_dir: Path, settings: SystemSettings, services: Backends,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    scheduler = start_scheduler(schedulers, scheduler_env, module_log_dir, "scheduler-rate")
    # One task every 5 s at most; the schedule is due every second.
    slow_key = await issue_key(services.mongodb_url, services.mongodb_database, rate_per_s=0.2)
    async with httpx.AsyncClient(base_url=http.base_url, headers=bearer(slow_key),
                                 timeout=30) as slow:
        sid = (await create(slow))["schedule_id"]

    async def eight_due_times() -> list[dict[str, Any]] | None:
        runs = await runs_of(mongo, settings, sid)
        return runs[:8] if len(runs) >= 8 else None

    runs = await eventually(eight_due_times, timeout_s=30, what="8 due times claimed")
    await http.post(f"/schedules/{sid}/pause")

    # 8 due times over 7 s at 0.2 tasks/s: the first runs (a full bucket), then one in five.
    ran = [run for run in runs if run["run_at"] is not None]
    assert 1 <= len(ran) <= 3, runs
    assert all(run["submitted"] for run in runs)
    assert scheduler.log().count("over the rate of the key that made it") >= 8 - len(ran)
    submitted = {task["task_id"] for task in await tasks_of(http, sid)}
    assert not submitted & {run["task_id"] for run in runs if run["run_at"] is None}
