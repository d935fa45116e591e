"""The scheduler process: submits the tasks of due schedules."""
