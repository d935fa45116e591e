"""HTTP route for workflows: a workflow's steps and where it stopped (scope `tasks:read`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.messages import ErrorInfo
from contracts.statuses import Status
from gateway.auth import Reader, api_key
from gateway.deps import ServicesDep
from service.errors import TaskNotFound
from service.workflows import workflow_steps

workflows = APIRouter(
    dependencies=[Depends(api_key)],
    responses={401: {"description": "No API key, or an unknown or revoked one "
                                    "(with `WWW-Authenticate: Bearer`)"},
               403: {"description": "The API key lacks the scope `tasks:read`"},
               404: {"description": "No such workflow (or another tenant's)"},
               429: {"description": "The API key is over its rate limit (with `Retry-After`)"},
               503: {"description": "MongoDB unavailable"}},
)

_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
_EXAMPLE: dict[str, Any] = {
    "workflow_id": _ID, "status": "stopped", "stopped_at": ["2f1e9a7b-6c2d-5e4f-8a1b-3c4d5e6f7a8b"],
    "steps": [
        {"task_id": _ID, "task_type": "sleep", "status": "succeeded",
         "created_at": "2026-11-30T08:00:00Z", "result": {"slept_s": 1, "total_slept_s": 1},
         "error": None},
        {"task_id": "2f1e9a7b-6c2d-5e4f-8a1b-3c4d5e6f7a8b", "task_type": "webhook",
         "status": "failed", "created_at": "2026-11-30T08:00:01Z", "result": None,
         "error": {"type": "PermanentFailure",
                   "message": "POST https://hooks.example.com (path #b3d1db31) answered 404"}}]}


class StepView(BaseModel):
    task_id: str
    task_type: str
    status: Status
    created_at: AwareDatetime
    result: Any
    error: ErrorInfo | None


class WorkflowView(BaseModel):
    """A workflow's steps known so far, oldest first, and the steps it stopped at."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    workflow_id: str
    status: Literal["running", "succeeded", "stopped"]
    stopped_at: list[str] = Field(description="Steps that ended without succeeding: their "
                                              "follow-ups never run")
    steps: list[StepView]


@workflows.get("/workflows/{workflow_id}", response_model=WorkflowView)
async def get_workflow(
    workflow_id: Annotated[str, Path(max_length=55)], services: ServicesDep, principal: Reader,
) -> WorkflowView:
    """A workflow's steps with their status, and where it stopped (scope `tasks:read`). The
    workflow id is its first task's id; every step carries the label `workflow=<id>`."""
    try:
        found = await workflow_steps(services.deps, workflow_id, principal.tenant)
    except TaskNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no workflow {workflow_id!r}") from error
    return WorkflowView(
        workflow_id=workflow_id, status=found.status,
        stopped_at=[step.task_id for step in found.stopped_at],
        steps=[StepView(task_id=s.task_id, task_type=s.task_type, status=s.status,
                        created_at=s.created_at, result=s.result, error=s.error)
               for s in found.steps])
