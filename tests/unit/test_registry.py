"""The one registry of task types, the handlers bound to them, and the retry schedule."""

from __future__ import annotations

import asyncio
import random
import textwrap
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mypy import api as mypy_api

from consumers.context import JSON, TaskContext
from consumers.decode import ReceivedTask
from consumers.handlers import HANDLERS
from consumers.progress import no_progress
from consumers.task_handler import HandlerError, TaskHandler, check_handlers
from contracts.payloads import SleepPayload
from contracts.registry import (
    TASK_TYPES,
    TaskSpec,
    UnknownTaskType,
    check_registry,
    get_spec,
    task_type_names,
)
from infra.runtime.settings.worker import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


async def nap(payload: SleepPayload, ctx: TaskContext) -> JSON:
    return {"task_id": ctx.task_id, "seconds": payload.seconds}


def spec(
    name: str = "probe", *, retry_base_s: float = 1.0, retry_cap_s: float = 120.0,
    timeout_s: float = 30.0,
) -> TaskSpec[SleepPayload]:
    return TaskSpec(name=name, payload=SleepPayload, retry_base_s=retry_base_s,
                    retry_cap_s=retry_cap_s, timeout_s=timeout_s)


def received(task_spec: TaskSpec[SleepPayload], *, attempt: int = 1) -> ReceivedTask:
    return ReceivedTask(
        task_id="t-1", spec=task_spec, payload=SleepPayload(seconds=0.5), attempt=attempt, run=2,
        max_attempts=5, timeout_s=30.0, retry_base_s=None, not_before=None, source="amqp",
        idempotency_key=None,
    )


def test_every_registered_type_has_exactly_one_handler_as_shipped() -> None:
    handlers = check_handlers(TASK_TYPES, HANDLERS)

    assert list(handlers) == task_type_names()
    assert all(handlers[s.name].spec is s for s in TASK_TYPES)


def test_the_registry_as_shipped_has_no_duplicates() -> None:
    check_registry(TASK_TYPES)

    assert len(set(task_type_names())) == len(TASK_TYPES)


def test_a_duplicate_type_name_is_refused() -> None:
    specs = (spec("twice"), spec("once"), spec("twice"))

    with pytest.raises(ValueError, match="twice") as refused:
        check_registry(specs)

    assert "once" not in str(refused.value)


def test_check_handlers_refuses_a_type_registered_twice() -> None:
    twice = spec("twice")

    with pytest.raises(HandlerError, match="registered twice: twice"):
        check_handlers((twice, twice), [TaskHandler(twice, nap)])


@pytest.mark.parametrize(
    ("bound", "complaint"),
    [
        pytest.param(["a"], "no handler for: b, c", id="missing"),
        pytest.param(["a", "b", "c", "b"], "more than one handler for: b", id="two-for-one"),
        pytest.param(["a", "b", "c", "fax"], "handlers for unregistered task types: fax",
                     id="unregistered"),
        pytest.param(["a-lookalike", "b", "c"],
                     "handlers bound to a spec that differs from the registered one: a",
                     id="differing-spec"),
    ],
)
def test_check_handlers_names_each_type_that_is_wrong(bound: list[str], complaint: str) -> None:
    specs = {name: spec(name) for name in ("a", "b", "c", "fax")}
    # Same name as `a`, other limits: the gateway and the worker would disagree on them.
    specs["a-lookalike"] = spec("a", timeout_s=1.0)
    registered = (specs["a"], specs["b"], specs["c"])

    with pytest.raises(HandlerError) as refused:
        check_handlers(registered, [TaskHandler(specs[name], nap) for name in bound])

    assert str(refused.value) == complaint


def test_check_handlers_reports_every_problem_at_once() -> None:
    a, b = spec("a"), spec("b")

    with pytest.raises(HandlerError) as refused:
        check_handlers((a, b), [TaskHandler(a, nap), TaskHandler(a, nap),
                                TaskHandler(spec("zz"), nap)])

    assert str(refused.value) == ("no handler for: b; more than one handler for: a; "
                                  "handlers for unregistered task types: zz")


def test_a_function_that_is_not_an_async_def_is_refused_when_bound() -> None:
    def looks_async(payload: SleepPayload, ctx: TaskContext) -> Awaitable[JSON]:
        return nap(payload, ctx)

    with pytest.raises(HandlerError, match=r"^probe: .*looks_async must be an async def"):
        TaskHandler(spec(), looks_async)


async def test_a_handler_without_a_hook_gets_its_task_and_no_clients() -> None:
    seen: list[TaskContext] = []

    reports: list[tuple[float, str | None]] = []

    async def record(payload: SleepPayload, ctx: TaskContext) -> JSON:
        seen.append(ctx)
        await ctx.progress(0.5, "half way")
        return await nap(payload, ctx)

    async def report(fraction: float, message: str | None) -> None:
        reports.append((fraction, message))

    probe = spec()
    async with TaskHandler(probe, record).started(WorkerSettings()) as run_task:
        result = await run_task(received(probe, attempt=3), report)

    assert result == {"task_id": "t-1", "seconds": 0.5}
    assert reports == [(0.5, "half way")]  # the worker's reporter for this attempt gets it
    assert [(c.task_id, c.task_type, c.attempt, c.run, c.clients) for c in seen] == [
        ("t-1", "probe", 3, 2, None)]


async def test_the_hook_opens_once_for_all_tasks_and_closes_after() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def counter(settings: WorkerSettings) -> AsyncIterator[list[str]]:
        events.append(f"open for {settings.process_name}")
        yield events
        events.append("closed")

    async def use(payload: SleepPayload, ctx: TaskContext[list[str]]) -> JSON:
        ctx.clients.append(f"ran {ctx.attempt}")
        return None

    probe = spec()
    async with TaskHandler(probe, use, clients=counter).started(
            WorkerSettings(worker_name="w1")) as run_task:
        await asyncio.gather(run_task(received(probe, attempt=1), no_progress),
                             run_task(received(probe, attempt=2), no_progress))
        assert events[-1] != "closed"

    assert events == ["open for w1", "ran 1", "ran 2", "closed"]


def test_mypy_refuses_a_handler_that_does_not_fit_its_spec(tmp_path: Path) -> None:
    """The binding is checked statically: the wrong payload type or clients fail `mypy`."""
    program = textwrap.dedent("""
        from consumers.handlers.send_email import send_email
        from consumers.handlers.sleep import sleep
        from consumers.handlers.webhook import call_webhook, http_client
        from consumers.task_handler import TaskHandler
        from contracts.registry import SLEEP, WEBHOOK

        TaskHandler(SLEEP, sleep)
        TaskHandler(WEBHOOK, call_webhook, clients=http_client)
        TaskHandler(SLEEP, send_email)
        TaskHandler(WEBHOOK, call_webhook)
        TaskHandler(SLEEP, sleep, clients=http_client)
    """)

    report, _, status = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path),
        "-c", program,
    ])

    refused = sorted(line.split(":")[1] for line in report.splitlines() if ": error:" in line)
    assert refused == ["10", "11", "12"], report
    assert status == 1


@pytest.mark.parametrize("name", ["send-email", "", "1st", "tasks.sleep", "a b"])
def test_task_spec_refuses_a_name_that_is_not_an_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        spec(name)


@pytest.mark.parametrize(("base", "cap"), [(1.0, 120.0), (0.5, 10.0), (2.0, 2.0)])
@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12, 40])
def test_retry_delay_is_in_the_upper_half_of_the_capped_exponential(
    attempt: int, base: float, cap: float
) -> None:
    probe = spec(retry_base_s=base, retry_cap_s=cap)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    rng = random.Random(attempt)

    delays = [probe.retry_delay_s(attempt, rng) for _ in range(200)]

    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert max(delays) - min(delays) > ceiling / 4  # jittered, not a constant


def test_retry_delay_grows_then_stops_at_the_cap() -> None:
    probe = spec(retry_base_s=1.0, retry_cap_s=120.0)

    lowest = [probe.retry_delay_s(attempt, random.Random(0)) for attempt in range(1, 12)]

    assert lowest == sorted(lowest)
    assert 60.0 <= lowest[-1] <= 120.0


@pytest.mark.parametrize("attempt", [1, 2, 4, 10])
def test_a_per_task_base_overrides_the_type_base_under_the_same_cap(attempt: int) -> None:
    probe = spec(retry_base_s=1.0, retry_cap_s=60.0)
    ceiling = min(60.0, 10.0 * 2 ** (attempt - 1))
    rng = random.Random(attempt)

    delays = [probe.retry_delay_s(attempt, rng, base_s=10.0) for _ in range(200)]

    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


def test_retry_delay_is_reproducible_with_a_seeded_generator() -> None:
    probe = spec()

    first = [probe.retry_delay_s(3, random.Random(7)) for _ in range(3)]
    second = [probe.retry_delay_s(3, random.Random(7)) for _ in range(3)]

    assert first == second


def test_get_spec_finds_a_registered_type() -> None:
    found = get_spec("sleep")

    assert found.name == "sleep"
    assert found.payload is SleepPayload


def test_get_spec_on_an_unknown_name_lists_the_known_types() -> None:
    with pytest.raises(UnknownTaskType) as unknown:
        get_spec("fax")

    assert unknown.value.name == "fax"
    assert isinstance(unknown.value, LookupError)
    message = str(unknown.value)
    assert "'fax'" in message
    assert all(name in message for name in task_type_names())
