"""`python -m scheduler`: `taskproc scheduler` (scheduler/command.py)."""

from scheduler.command import command

if __name__ == "__main__":
    command(prog_name="python -m scheduler")
