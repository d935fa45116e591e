"""The one registry of task types, its handlers, and the retry schedule."""

from __future__ import annotations

import inspect
import random

import pytest

from consumers.handlers_registry import HandlerError, resolve_all, resolve_handler
from contracts.payloads import SleepPayload
from contracts.registry import (
    TASK_TYPES,
    TaskSpec,
    UnknownTaskType,
    check_registry,
    get_spec,
    task_type_names,
)

HERE = __name__


# Handlers for resolve_handler to find: one right, the others wrong in one way each.
async def good_handler(payload: object, ctx: object) -> None:
    return None


def some_sync_fn(payload: object, ctx: object) -> None:
    return None


async def one_arg(payload: object) -> None:
    return None


async def three_args(payload: object, ctx: object, extra: object) -> None:
    return None


not_a_function = 42


def spec(
    name: str = "probe", handler: str = f"{HERE}:good_handler", *,
    retry_base_s: float = 1.0, retry_cap_s: float = 120.0,
) -> TaskSpec:
    return TaskSpec(name=name, payload=SleepPayload, handler=handler,
                    retry_base_s=retry_base_s, retry_cap_s=retry_cap_s)


def test_every_registered_type_has_a_resolvable_handler() -> None:
    handlers = resolve_all()

    assert list(handlers) == task_type_names()
    assert all(inspect.iscoroutinefunction(handler) for handler in handlers.values())


def test_the_registry_as_shipped_has_no_duplicates() -> None:
    check_registry(TASK_TYPES)

    assert len(set(task_type_names())) == len(TASK_TYPES)


def test_a_good_handler_resolves_to_that_function() -> None:
    probe = spec()

    handler = resolve_handler(probe)

    assert handler is good_handler


def test_a_duplicate_type_name_is_refused() -> None:
    specs = (spec("twice"), spec("once"), spec("twice", f"{HERE}:good_handler"))

    with pytest.raises(ValueError, match="twice") as refused:
        check_registry(specs)

    assert "once" not in str(refused.value)


def test_resolve_all_refuses_a_duplicate_before_resolving() -> None:
    specs = (spec("twice"), spec("twice"))

    with pytest.raises(HandlerError, match="registered twice"):
        resolve_all(specs)


@pytest.mark.parametrize(
    ("handler", "complaint"),
    [
        pytest.param("tests.unit.no_such_module:good_handler", "cannot import", id="no-module"),
        pytest.param(f"{HERE}:no_such_function", "has no 'no_such_function'", id="no-function"),
        pytest.param(f"{HERE}:some_sync_fn", "async def", id="sync-function"),
        pytest.param(f"{HERE}:not_a_function", "async def", id="not-callable"),
        pytest.param(f"{HERE}:one_arg", "(payload, ctx)", id="one-argument"),
        pytest.param(f"{HERE}:three_args", "(payload, ctx)", id="three-arguments"),
    ],
)
def test_a_wrong_handler_is_a_handler_error_naming_the_type(handler: str, complaint: str) -> None:
    probe = spec("probe", handler)

    with pytest.raises(HandlerError) as refused:
        resolve_handler(probe)

    assert complaint in str(refused.value)
    assert str(refused.value).startswith("probe:")


def test_resolve_all_reports_a_wrong_handler() -> None:
    specs = (spec("fine"), spec("broken", f"{HERE}:some_sync_fn"))

    with pytest.raises(HandlerError, match="broken"):
        resolve_all(specs)


@pytest.mark.parametrize("name", ["send-email", "", "1st", "tasks.sleep", "a b"])
def test_task_spec_refuses_a_name_that_is_not_an_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        spec(name)


def test_task_spec_refuses_a_handler_without_a_function_part() -> None:
    with pytest.raises(ValueError, match="module:function"):
        spec("probe", "consumers.handlers.sleep.sleep")


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
