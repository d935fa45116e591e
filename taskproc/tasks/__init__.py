"""taskproc's built-in task types, one module each, registered as any package's are: by the
entry points in taskproc's own pyproject.toml (group `taskproc.task_types`). A deployment
leaves any of them out with DISABLED_TASK_TYPES."""
