"""The gateway's request middleware, one concern a module, each a plain ASGI class: metrics,
tracing, and the task type a submission names. `gateway.app` composes them in one list, which
says their order and why; the request limits beside them are in `gateway.request_limits`."""
