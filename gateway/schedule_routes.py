"""HTTP routes of schedules: create, list, read, pause, resume, delete (each needs an API key;
the schedules are the key's tenant's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from gateway.auth import KeyFirstRoute, Reader, Submitter, api_key
from gateway.deps import ServicesDep
from gateway.request_limits import LimitsDep, check_limits
from gateway.schedule_models import ScheduleList, ScheduleRequest, ScheduleView
from service.schedule_times import InvalidTiming
from service.schedules import (
    ScheduleBounds,
    Schedules,
    add_schedule,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
)

schedules = APIRouter(
    dependencies=[Depends(api_key)],
    route_class=KeyFirstRoute,
    tags=["schedules"],
    responses={401: {"description": "No API key, or an unknown or revoked one"},
               403: {"description": "The API key lacks the scope this endpoint needs"},
               413: {"description": "Request body over MAX_REQUEST_BYTES"},
               429: {"description": "The API key is over its rate limit"},
               503: {"description": "MongoDB unavailable"}},
)
# A page of `GET /schedules`, as of `GET /tasks`.
MAX_LIMIT = 200
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such schedule (or another tenant's)"}}


def _store(services: ServicesDep) -> Schedules:
    return services.schedules


StoreDep = Annotated[Schedules, Depends(_store)]


async def _bounds(request: Request) -> ScheduleBounds:
    bounds: ScheduleBounds = request.app.state.schedule_bounds
    return bounds


BoundsDep = Annotated[ScheduleBounds, Depends(_bounds)]


@schedules.post("/schedules", status_code=status.HTTP_201_CREATED, response_model=ScheduleView,
                responses={400: {"description": "A body that cannot be read as text (not UTF-8)"},
                           409: {"description": "The tenant holds MAX_SCHEDULES_PER_TENANT "
                                                "schedules already"},
                           422: {"description": "Invalid cron expression (5 fields), unknown "
                                                "time zone, not exactly one of cron and "
                                                "interval_s, interval_s under "
                                                "MIN_SCHEDULE_INTERVAL_S, or an invalid task"}})
async def create(
    request: Annotated[ScheduleRequest, Body()], store: StoreDep, limits: LimitsDep,
    bounds: BoundsDep, principal: Submitter,
) -> ScheduleView:
    """Submit a task on a cron expression (5 fields, read in `timezone`) or every `interval_s`
    seconds (scope `tasks:submit`). Each run is a task labelled `schedule=<schedule_id>`, and
    counts against this key's rate limit (a run over it is skipped)."""
    check_limits(limits, request.task_type, timeout_s=request.timeout_s,
                 max_attempts=request.max_attempts, not_before=None)
    wire = request.model_dump(mode="json", by_alias=True, exclude_unset=True)
    try:
        schedule = create_schedule(
            principal.tenant, task_type=request.task_type, payload=wire["payload"],
            cron=request.cron, interval_s=request.interval_s, timezone=request.timezone,
            catch_up=request.catch_up, labels=request.labels,
            max_attempts=request.max_attempts, timeout_s=request.timeout_s,
            min_interval_s=bounds.min_interval_s, owner_key=principal.key_id,
            owner_rate_per_s=principal.rate_per_s)
    except InvalidTiming as error:
        raise RequestValidationError([{"loc": ("body", error.field), "msg": str(error),
                                       "type": "invalid_schedule"}]) from error
    return ScheduleView.of(await add_schedule(store, schedule, bounds))


@schedules.get("/schedules", response_model=ScheduleList,
               responses={422: {"description": "A limit out of range, or a cursor no listing "
                                               "gave"}})
async def list_all(
    store: StoreDep, principal: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=400,
                                        description="`next` of the previous page.")] = None,
) -> ScheduleList:
    """The key's tenant's schedules, oldest first (scope `tasks:read`), a page at a time: pass
    the answer's `next` as `cursor` for the next page."""
    page = await list_schedules(store, principal.tenant, limit=limit, cursor=cursor)
    return ScheduleList(items=[ScheduleView.of(schedule) for schedule in page.items],
                        next=page.cursor)


@schedules.get("/schedules/{schedule_id}", response_model=ScheduleView, responses=_NOT_FOUND)
async def read(schedule_id: str, store: StoreDep, principal: Reader) -> ScheduleView:
    """One schedule (scope `tasks:read`)."""
    return ScheduleView.of(await get_schedule(store, schedule_id, principal.tenant))


@schedules.delete("/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT,
                  response_class=Response, responses=_NOT_FOUND)
async def delete(schedule_id: str, store: StoreDep, principal: Submitter) -> Response:
    """Delete a schedule (scope `tasks:submit`); tasks it submitted are left as they are."""
    await delete_schedule(store, schedule_id, principal.tenant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@schedules.post("/schedules/{schedule_id}/pause", response_model=ScheduleView,
                responses=_NOT_FOUND)
async def pause(schedule_id: str, store: StoreDep, principal: Submitter) -> ScheduleView:
    """Stop submitting runs until resumed (scope `tasks:submit`)."""
    return ScheduleView.of(await pause_schedule(store, schedule_id, principal.tenant,
                                                paused=True))


@schedules.post("/schedules/{schedule_id}/resume", response_model=ScheduleView,
                responses=_NOT_FOUND)
async def resume(schedule_id: str, store: StoreDep, principal: Submitter) -> ScheduleView:
    """Submit runs again, from the first due time after now (scope `tasks:submit`)."""
    return ScheduleView.of(await pause_schedule(store, schedule_id, principal.tenant,
                                                paused=False))
