"""JSON Schemas of every message, for services that publish tasks or consume status events."""

from __future__ import annotations

from typing import Any

from contracts.control import CancelRequest
from contracts.messages import ProgressEvent, StatusEvent, TaskBody
from contracts.registry import task_types


def json_schemas() -> dict[str, Any]:
    """One document: the task body, the status and progress events, the cancel request
    (exchange `task-control`), and each task type's payload."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "task_body": TaskBody.model_json_schema(),
        "status_event": StatusEvent.model_json_schema(),
        "cancel_request": CancelRequest.model_json_schema(),
        "progress_event": ProgressEvent.model_json_schema(),
        "payloads": {
            spec.name: {
                "exchange": f"tasks.{spec.name}",
                "schema": spec.payload.model_json_schema(by_alias=True),
            }
            for spec in task_types()
        },
    }
