"""Observability of every process: metrics, traces and task-scoped logs, and the middleware hooks
they ride on."""
