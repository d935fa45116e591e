"""The base of payload models: input from outside, unknown fields refused, depth bounded.

Each task type's own model lives in its task module (taskproc/tasks/ for the built-in ones).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from contracts.json_depth import nests_deeper
from contracts.limits import MAX_PAYLOAD_DEPTH


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, data: Any) -> Any:
        # Checked first, without recursion: a deeper payload would be accepted, then fail to
        # serialize (a 500 at the gateway, a requeue loop at the worker).
        if nests_deeper(data, MAX_PAYLOAD_DEPTH):
            raise ValueError(f"nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        return data
