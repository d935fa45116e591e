"""The registry of task types (declared by task modules, registered by entry points or
TASK_MODULES), the handlers bound to them, and the retry schedule."""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from mypy import api as mypy_api

from consumers.decode import ReceivedTask
from contracts.registry import (
    ENTRY_POINT_GROUP,
    RegistryError,
    TaskSpec,
    UnknownTaskType,
    get_spec,
    load,
    task_type_names,
    task_types,
)
from infra.runtime.settings.worker import WorkerSettings
from taskproc import task_type
from taskproc.context import JSON, TaskContext, no_progress
from taskproc.handler import HandlerError, TaskHandler
from taskproc.registration import handler_for
from taskproc.tasks.sleep import SleepPayload

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


def test_taskproc_registers_its_built_in_types_as_any_package_does() -> None:
    own = {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)
           if point.dist is not None and point.dist.name == "taskproc"}

    assert own == {name: f"taskproc.tasks.{name}" for name in ("send_email", "sleep", "webhook")}
    assert set(own) <= set(task_type_names())  # another installed package may add its own
    assert all(handler_for(s.name).spec is s for s in task_types())


def write_module(root: Path, dotted: str, source: str) -> None:
    """A task module on `root` (a path the test puts on sys.path) under the name `dotted`."""
    path = root.joinpath(*dotted.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.parents:
        if parent == root:
            break
        (parent / "__init__.py").touch()
    path.write_text(textwrap.dedent(source))


THUMBNAIL = """
    from pydantic import BaseModel
    from taskproc import TaskContext, task_type

    class Thumbnail(BaseModel):
        width: int

    @task_type("{name}", timeout_s=60, max_attempts=3, prefetch=2)
    async def thumbnail(payload: Thumbnail, ctx: TaskContext) -> dict[str, int]:
        return {{"width": payload.width}}
"""


def test_a_registered_module_adds_its_types_with_their_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "reg_one.tasks", THUMBNAIL.format(name="thumbnail_one"))

    loaded = load(["taskproc.tasks.sleep", "reg_one.tasks"])

    assert [spec.name for spec in loaded] == ["sleep", "thumbnail_one"]
    thumbnail = loaded[1]
    assert (thumbnail.timeout_s, thumbnail.max_attempts, thumbnail.prefetch) == (60, 3, 2)
    assert thumbnail.payload.__name__ == "Thumbnail"


def test_a_package_registers_the_types_its_submodules_declare(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "reg_two.tasks", THUMBNAIL.format(name="thumbnail_two"))
    (tmp_path / "reg_two" / "__init__.py").write_text("from reg_two import tasks as tasks\n")

    assert [spec.name for spec in load(["reg_two"])] == ["thumbnail_two"]


def test_a_module_not_registered_adds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "reg_three", THUMBNAIL.format(name="thumbnail_three"))
    importlib.import_module("reg_three")  # declared by an import, but never registered

    assert "thumbnail_three" not in [spec.name for spec in load(["taskproc.tasks.sleep"])]


def test_a_type_declared_by_two_registered_modules_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "reg_four_a", THUMBNAIL.format(name="sleep"))

    with pytest.raises(RegistryError, match=re.escape(
            "'sleep' is declared twice: in taskproc.tasks.sleep and in reg_four_a")):
        load(["taskproc.tasks.sleep", "reg_four_a"])


def test_disabled_types_are_left_out_and_an_unknown_one_is_refused() -> None:
    modules = ["taskproc.tasks.send_email", "taskproc.tasks.sleep", "taskproc.tasks.webhook"]

    kept = load(modules, disabled=["webhook", "send_email"])
    assert [spec.name for spec in kept] == ["sleep"]
    with pytest.raises(RegistryError, match="names types not registered: fax"):
        load(modules, disabled=["fax"])


def test_a_module_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(RegistryError, match="task module 'no_such_tasks' cannot be imported"):
        load(["no_such_tasks"])


def test_a_handler_must_name_its_payload_model() -> None:
    async def untyped(payload, ctx):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(HandlerError, match="annotated with its payload's pydantic model"):
        task_type("untyped")(untyped)


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


def test_mypy_refuses_a_handler_that_does_not_fit_its_declaration(tmp_path: Path) -> None:
    """The declaration is checked statically: a payload that is no model, a context whose
    clients are not what the hook opens, or a result that is not JSON fail `mypy`."""
    program = textwrap.dedent("""
        from taskproc import TaskContext, task_type
        from taskproc.tasks.sleep import SleepPayload
        from taskproc.tasks.webhook import http_client
        import httpx

        @task_type("fine", clients=http_client)
        async def fine(payload: SleepPayload, ctx: TaskContext[httpx.AsyncClient]) -> list[int]:
            return []

        @task_type("not_a_model")
        async def not_a_model(payload: int, ctx: TaskContext) -> None: ...

        @task_type("wrong_clients", clients=http_client)
        async def wrong_clients(payload: SleepPayload, ctx: TaskContext[str]) -> None: ...

        @task_type("not_json")
        async def not_json(payload: SleepPayload, ctx: TaskContext) -> set[int]:
            return set()
    """)

    report, _, status = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path),
        "-c", program,
    ])

    refused = sorted({int(line.split(":")[1]) for line in report.splitlines()
                      if ": error:" in line})
    assert refused == [11, 14, 17], report
    assert status == 1


@pytest.mark.parametrize("name", ["send-email", "", "1st", "tasks.sleep", "a b"])
def test_task_spec_refuses_a_name_that_is_not_an_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        spec(name)


@pytest.mark.parametrize(("name", "complaint"), [
    ("quarantine", "the service's own tasks.quarantine"),
    ("x" * 101, "longer than 100 characters"),
])
def test_task_spec_refuses_a_name_whose_queues_cannot_be_its_own(name: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
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


def test_the_module_applying_the_decorator_declares_the_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler's function is written in one module and declared in another.
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "reg_five_impl", """
        from pydantic import BaseModel
        from taskproc import TaskContext

        class Resize(BaseModel):
            width: int

        async def resize(payload: Resize, ctx: TaskContext) -> None:
            return None
    """)
    write_module(tmp_path, "reg_five_tasks", """
        from taskproc import task_type
        from reg_five_impl import resize

        resize_type = task_type("resize_five")(resize)
    """)

    assert [spec.name for spec in load(["reg_five_tasks"])] == ["resize_five"]


def test_a_clients_type_imported_for_type_checking_only_is_never_evaluated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A typed hook need not make every process import its library (docs/task-types.md).
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "reg_six", """
        from __future__ import annotations

        from typing import TYPE_CHECKING

        from pydantic import BaseModel
        from taskproc import TaskContext, task_type

        if TYPE_CHECKING:
            from heavy_library_never_installed import Client

        class Job(BaseModel):
            n: int

        @task_type("job_six")
        async def job(payload: Job, ctx: TaskContext[Client]) -> None:
            return None
    """)

    [spec] = load(["reg_six"])
    assert spec.payload.__name__ == "Job"


@pytest.mark.parametrize(("variable", "value", "complaint"), [
    ("TASK_MODULES", "no_such_tasks", "task module 'no_such_tasks' cannot be imported"),
    ("DISABLED_TASK_TYPES", "fax", "DISABLED_TASK_TYPES names types not registered: fax"),
])
@pytest.mark.parametrize("program", [
    ["-c", "from cli.entry import main; main()", "--help"],
    ["-m", "consumers", "worker", "sleep"],
    ["-m", "gateway"],
])
def test_a_registry_that_cannot_load_ends_a_process_with_one_line(
        program: list[str], variable: str, value: str, complaint: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TASK_MODULES", "DISABLED_TASK_TYPES")}

    ran = subprocess.run([sys.executable, *program], env={**env, variable: value},
                         capture_output=True, text=True, timeout=60, check=False)

    assert ran.returncode == 1
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert complaint in ran.stderr
