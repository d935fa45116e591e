"""The gateway's settings (`python -m gateway`, `taskproc gateway`)."""

from __future__ import annotations

from pydantic import Field

from infra.mongodb.task_queries import MAX_EXAMINED
from infra.runtime.settings.common import KIB, MIB, CommonSettings
from infra.runtime.settings.connections import TaskServiceSettings
from infra.runtime.settings.tasks import TaskLimitSettings
from service.schedules import ScheduleBounds


class GatewayAddress(CommonSettings):
    """Where the gateway listens: the gateway's own, and the ports a webhook may never reach."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000


class ApiKeySettings(CommonSettings):
    """How long a gateway trusts what it read about an API key (`taskproc keys revoke` says
    it)."""

    # Seconds a gateway trusts what it read about an API key: a revoked key is refused on every
    # gateway within this long.
    api_key_cache_s: float = Field(default=2.0, ge=0, le=60)


class GatewaySettings(GatewayAddress, ApiKeySettings, TaskLimitSettings, TaskServiceSettings):
    """Everything the gateway reads: its address and HTTP limits, API keys, task limits,
    schedule bounds, and the task service's connections."""

    # uvicorn worker processes of the gateway; each holds its own connections.
    gateway_workers: int = Field(default=1, ge=1, le=64)
    # One log line per HTTP request costs a fifth of the gateway's time at full load: off by
    # default; failures are logged either way.
    gateway_access_log: bool = False
    # A request body over this many bytes answers 413, counted as it arrives (never buffered).
    max_request_bytes: int = Field(default=256 * KIB, ge=1 * KIB, le=64 * MIB)
    # Requests one gateway process serves at once; past it, 503 with Retry-After (/health and
    # /health/ready are always answered).
    gateway_max_concurrency: int = Field(default=1000, ge=1, le=100_000)
    # Tasks one `GET /tasks` reads at most past what its indexes select (a filter no index
    # serves, such as a rare label or an `updated_*` bound, over many tasks): past it the page
    # is cut short and its `next` goes on from where the reading stopped.
    listing_max_examined: int = Field(default=MAX_EXAMINED, ge=100, le=10_000_000)
    # Schedules one tenant may hold: each costs the scheduler a store round trip per run.
    max_schedules_per_tenant: int = Field(default=100, ge=1, le=100_000)
    # The shortest `interval_s` a new schedule may have; a cron expression runs at most once a
    # minute, so 60 s puts both on the same footing.
    min_schedule_interval_s: float = Field(default=60.0, ge=1, le=86_400)

    @property
    def schedule_bounds(self) -> ScheduleBounds:
        return ScheduleBounds(max_per_tenant=self.max_schedules_per_tenant,
                              min_interval_s=self.min_schedule_interval_s)
