"""The projector's settings (`python -m projector`, `taskproc projector`)."""

from __future__ import annotations

from pydantic import Field

from infra.runtime.settings.common import MetricsSettings, NamedProcess
from infra.runtime.settings.connections import ConnectedSettings, RetentionSettings


class ProjectorSettings(NamedProcess, MetricsSettings, ConnectedSettings, RetentionSettings):
    """Everything the projector reads: its connections, batches, expiry and metrics."""

    # The projector writes events to MongoDB in batches of at most this many, closing a batch
    # this many seconds after its first event at the latest.
    projector_batch_size: int = Field(default=500, ge=1, le=10_000)
    projector_batch_window_s: float = Field(default=0.002, ge=0, le=1)
