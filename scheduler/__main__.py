"""`python -m scheduler`: `taskproc scheduler` (scheduler/command.py)."""

from infra.runtime.process import registry_errors_in_one_line

if __name__ == "__main__":
    with registry_errors_in_one_line("python -m scheduler"):
        from scheduler.command import command

        command(prog_name="python -m scheduler")
