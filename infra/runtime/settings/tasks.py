"""Operators' caps per task type over the registry's (`TASK_LIMITS`): the gateway checks a
submission against them, a worker runs a task under them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.limits import DAY_S, TaskLimits
from contracts.registry import TaskSpec, task_type_names
from infra.runtime.settings.common import CommonSettings


class TaskLimitOverride(BaseModel):
    """An operator's caps for one task type (`TASK_LIMITS`); unset keeps the type's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    not_before_days: float | None = Field(default=None, ge=0, le=3650)


class TaskLimitSettings(CommonSettings):
    """`TASK_LIMITS`, read by the gateway and the workers."""

    # Caps per task type over the registry's, as JSON: {"webhook": {"timeout_s": 60,
    # "max_attempts": 10, "not_before_days": 7}}. Give every process the same value.
    task_limits: dict[str, TaskLimitOverride] = Field(default_factory=dict)

    @field_validator("task_limits")
    @classmethod
    def _known_task_types(
        cls, value: dict[str, TaskLimitOverride]
    ) -> dict[str, TaskLimitOverride]:
        unknown = sorted(set(value) - set(task_type_names()))
        if unknown:
            raise ValueError(f"unknown task type(s) {', '.join(unknown)}; "
                             f"known: {', '.join(task_type_names())}")
        return value

    def limits_for(self, spec: TaskSpec) -> TaskLimits:
        """The caps of `spec`: the registry's, with this operator's overrides."""
        override = self.task_limits.get(spec.name, TaskLimitOverride())
        default = spec.limits
        return TaskLimits(
            timeout_s=override.timeout_s or default.timeout_s,
            max_attempts=override.max_attempts or default.max_attempts,
            not_before_s=(default.not_before_s if override.not_before_days is None
                          else override.not_before_days * DAY_S),
        )
