"""Checking a submission's `then` (docs/http-api.md, Workflows) at the gateway: every
follow-up, at any depth, is validated as `POST /tasks` validates a task, so an invalid one is a
422 naming where it is and nothing is published."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from contracts.limits import (
    MAX_LABELS,
    MAX_THEN,
    MAX_WORKFLOW_DEPTH,
    MAX_WORKFLOW_TASKS,
    over_limits,
)
from contracts.messages import FollowUp
from gateway.http_models import TaskRequest
from gateway.request_limits import LimitTable

_TASK = TypeAdapter(TaskRequest)
Loc = tuple[str | int, ...]


def checked_follow_ups(
    then: list[dict[str, Any]] | None, limits: LimitTable, loc: Loc,
    labels: tuple[str, ...] = (),
) -> tuple[dict[str, Any], ...]:
    """`then` in its wire form (as each follow-up's model reads it), or a 422 listing every
    follow-up that is invalid, over a cap, too deep or one too many."""
    errors: list[dict[str, Any]] = []
    counted = [0]
    steps = _check(then or [], limits, (*loc, "then"), 1, counted, errors)
    if then and len(set(labels)) + 1 > MAX_LABELS:
        errors.append(_error((*loc, "labels"), "too_long",
                             f"with `workflow=<id>`, over {MAX_LABELS} labels"))
    if counted[0] > MAX_WORKFLOW_TASKS:
        errors.append(_error(loc, "too_long",
                             f"a workflow holds at most {MAX_WORKFLOW_TASKS} follow-ups"))
    if errors:
        raise RequestValidationError(errors)
    return tuple(steps)


def _check(
    steps: list[dict[str, Any]], limits: LimitTable, loc: Loc, depth: int, counted: list[int],
    errors: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    if depth > MAX_WORKFLOW_DEPTH:
        errors.append(_error(loc, "too_deep", f"`then` nests at most {MAX_WORKFLOW_DEPTH} deep"))
        return []
    if len(steps) > MAX_THEN:
        errors.append(_error(loc, "too_long", f"at most {MAX_THEN} follow-ups per task"))
        return []
    wire: list[dict[str, Any]] = []
    for index, given in enumerate(steps):
        raw = dict(given) if isinstance(given, dict) else given
        counted[0] += 1
        here = (*loc, index)
        nested = raw.pop("then", None) if isinstance(raw, dict) else None
        try:
            task = _TASK.validate_python(raw)
        except ValidationError as error:
            errors.extend({**item, "loc": (*here, *item["loc"])} for item in
                          error.errors(include_url=False, include_input=False))
            continue
        errors.extend(_error((*here, over.field), "over_limit", over.message) for over in
                      over_limits(task.task_type, limits[task.task_type],
                                  timeout_s=task.timeout_s, max_attempts=task.max_attempts,
                                  not_before=None, now=datetime.now(UTC)))
        if task.not_before is not None:
            errors.append(_error((*here, "not_before"), "extra_forbidden",
                                 "a follow-up starts when the step before it succeeds"))
        if len(set(task.labels)) + 1 > MAX_LABELS:
            errors.append(_error((*here, "labels"), "too_long",
                                 f"with `workflow=<id>`, over {MAX_LABELS} labels"))
        step = task.model_dump(mode="json", by_alias=True, exclude_unset=True,
                               exclude={"not_before"})
        if nested is not None:
            if not isinstance(nested, list):
                errors.append(_error((*here, "then"), "list_type", "must be a list"))
                continue
            step["then"] = _check(nested, limits, (*here, "then"), depth + 1, counted, errors)
        wire.append(FollowUp.model_validate(step).model_dump(mode="json", exclude_none=True))
    return wire


def _error(loc: Loc, kind: str, message: str) -> dict[str, Any]:
    return {"loc": loc, "type": kind, "msg": message}
