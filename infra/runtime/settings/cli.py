"""The command line's settings, one class per kind of verb: each validates only what its verbs
use. The HTTP verbs (`tasks`, `schedules`) and `schemas` read none; the process verbs read
their process's class."""

from __future__ import annotations

from infra.runtime.settings.connections import (
    ConnectedSettings,
    MongoSettings,
    QueueLimitSettings,
    RabbitMQSettings,
)
from infra.runtime.settings.gateway import ApiKeySettings


class StoreVerbSettings(MongoSettings):
    """`read-model`: MongoDB only."""


class KeysVerbSettings(ApiKeySettings, StoreVerbSettings):
    """`keys`: MongoDB, and (for `keys revoke`'s answer) how long a gateway trusts a key."""


class BrokerAdminSettings(QueueLimitSettings):
    """`topology` and `rabbitmq setup`: they act as the broker's administrator, whoever that is
    (guest on a fresh broker), so guest is not refused here."""

    service_user_rules = False


class ServicesVerbSettings(RabbitMQSettings, MongoSettings):
    """`taskproc services`: the RabbitMQ and MongoDB it starts when they are not running."""


class DeadLetterVerbSettings(ConnectedSettings):
    """`dead-letters list|replay`: they connect as one of the service's RabbitMQ users (the
    gateway's) and read the dead-letter archive."""
