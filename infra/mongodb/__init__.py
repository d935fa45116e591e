"""The MongoDB adapters: the client, the read model (`tasks`) and its queries, the status recorder,
idempotency keys, API keys, cancellations, the dead-letter archive, schedules, expiry and the
read model's migration."""
