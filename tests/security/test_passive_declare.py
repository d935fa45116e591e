"""What RabbitMQ's permissions cannot refuse an outside publisher: a passive declare, which
answers whether a queue exists, its depth and its consumers. Documented in docs/security.md,
RabbitMQ users and tenants; this row fails when a broker starts refusing it (then the page
and this row change) or when the page stops saying it.

On the production layout `taskproc rabbitmq setup` makes, with a prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from contracts import names
from contracts.registry import task_type_names
from infra.rabbitmq.layout import gateway_user, parse_publisher, projector_user, worker_user
from infra.rabbitmq.management import management
from infra.rabbitmq.setup import setup, url_for
from infra.runtime.settings.system import SystemSettings
from tests.support.docs import doc
from tests.support.rabbitmq_admin import delete_layout
from tests.support.services import Backends, missing

TYPES = task_type_names()


@pytest.fixture(scope="module")
async def publisher_url(services: Backends, tmp_path_factory: pytest.TempPathFactory
                        ) -> AsyncIterator[tuple[str, str]]:
    """The AMQP URL of an outside publisher allowed `sleep` only, and the admin's, on a vhost
    made by setup."""
    if not services.local_broker:
        missing("a local RabbitMQ with its management API")
    run = uuid.uuid4().hex[:8]
    vhost, prefix, publisher = f"taskproc-passive-{run}", f"p{run}-", f"outside-{run}"
    admin = SystemSettings(rabbitmq_url=services.rabbitmq_url, taskproc_env="development")
    credentials = tmp_path_factory.mktemp("rabbitmq") / "credentials.env"
    users = [gateway_user(prefix), projector_user(prefix), publisher,
             *(worker_user(t, prefix) for t in TYPES)]
    try:
        await setup(admin, vhost=vhost, credentials_file=credentials, user_prefix=prefix,
                    publishers=[parse_publisher(f"{publisher}=billing:sleep", TYPES, prefix)])
        urls = dict(line.split("=", 1) for line in credentials.read_text().splitlines() if line)
        async with management(admin.rabbitmq_management_url, admin.rabbitmq_url) as api:
            # Setup leaves guest nothing on its vhost; the test fills a queue as the admin.
            await api.put_permissions(vhost, "guest", {"configure": ".*", "write": ".*",
                                                       "read": ".*"})
        yield urls[publisher], url_for(services.rabbitmq_url, "guest", "guest", vhost)
    finally:
        await delete_layout(admin, users, vhost)


async def test_an_outside_publisher_can_passively_declare_any_queue_and_readme_says_so(
    publisher_url: tuple[str, str],
) -> None:
    publisher, admin = publisher_url
    queue = names.task_queue("webhook")  # a type this publisher may not even publish
    async with await aio_pika.connect(admin) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue)

    async with await aio_pika.connect(publisher) as connection:
        seen = await (await connection.channel()).declare_queue(queue, passive=True)
        with pytest.raises(ChannelAccessRefused):  # an active declare needs configure
            await (await connection.channel()).declare_queue(queue, durable=True)
        unread = await (await connection.channel()).get_queue(queue, ensure=False)
        with pytest.raises(ChannelAccessRefused):  # and a message needs read
            await unread.get(fail=False)

    assert seen.declaration_result.message_count == 1
    readme = " ".join(doc("docs/security.md").split())
    assert "**What no permission refuses: passive declares.**" in readme
    assert "test_passive_declare.py" in readme
