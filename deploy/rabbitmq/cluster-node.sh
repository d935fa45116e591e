#!/bin/sh
# Entry point of a compose `cluster` profile RabbitMQ node: the nodes of a cluster (and the CLI
# tools in each container) must share one Erlang cookie. It comes from .env through
# ERLANG_COOKIE and is written where RabbitMQ and its CLI read it (HOME is /var/lib/rabbitmq),
# readable by its owner only, before the image's own entry point starts the node.
set -eu
: "${ERLANG_COOKIE:?set RABBITMQ_ERLANG_COOKIE in .env}"
umask 077
printf '%s' "$ERLANG_COOKIE" > /var/lib/rabbitmq/.erlang.cookie
chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
chmod 400 /var/lib/rabbitmq/.erlang.cookie
unset ERLANG_COOKIE
exec docker-entrypoint.sh rabbitmq-server
