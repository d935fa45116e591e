#!/bin/sh
# Entry point of a compose `cluster` profile MongoDB member: the members of a replica set with
# auth on authenticate to each other with one key file. Its content comes from .env through
# REPLICA_SET_KEY and is written for the mongodb user only, before the image's own entry point
# starts mongod as a member of replica set rs0.
set -eu
: "${REPLICA_SET_KEY:?set MONGO_REPLICA_SET_KEY in .env}"
umask 077
printf '%s' "$REPLICA_SET_KEY" > /etc/mongo-replica-set.key
chown mongodb:mongodb /etc/mongo-replica-set.key
chmod 400 /etc/mongo-replica-set.key
unset REPLICA_SET_KEY
exec docker-entrypoint.sh mongod --auth --bind_ip_all --replSet rs0 \
  --keyFile /etc/mongo-replica-set.key
