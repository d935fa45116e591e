"""Every process's settings in one object: what `taskproc run` checks before it starts them
all with one environment (and what a test that runs several processes in one hands each)."""

from __future__ import annotations

from infra.runtime.settings.gateway import GatewaySettings
from infra.runtime.settings.projector import ProjectorSettings
from infra.runtime.settings.scheduler import SchedulerSettings
from infra.runtime.settings.worker import WorkerSettings


class SystemSettings(GatewaySettings, WorkerSettings, ProjectorSettings, SchedulerSettings):
    """The union of the gateway's, a worker's, the projector's and the scheduler's settings."""
