"""What the replay use case runs on, assembled for the gateway and the CLI alike.

Kept out of infra/replay.py, which the projector imports: the projector archives letters and
never replays one, so it does not load the use case (nor, until the domain errors move out of
the gateway, `gateway.errors`).
"""

from __future__ import annotations

from datetime import timedelta

from infra.broker import Broker
from infra.replay import BrokerDeadLetterQueue, BrokerLetterPublisher
from infra.settings import Settings
from service.dead_letters import DeadLetterArchive
from service.replay import ReplayPorts, TaskReadModel


def replay_ports(
    settings: Settings, broker: Broker, tasks: TaskReadModel, archive: DeadLetterArchive, *,
    replayed_by: str,
) -> ReplayPorts:
    return ReplayPorts(
        tasks=tasks, archive=archive, publisher=BrokerLetterPublisher(broker),
        queue=BrokerDeadLetterQueue(broker), replayed_by=replayed_by,
        # Long enough for a live replay to connect, publish and record `queued`.
        claim_patience=timedelta(seconds=2 * settings.publish_timeout_s
                                 + settings.mongodb_timeout_s + 1),
    )
