"""`python -m consumers worker TYPE`: `taskproc worker TYPE` (consumers/command.py)."""

from infra.runtime.process import registry_errors_in_one_line

if __name__ == "__main__":
    with registry_errors_in_one_line("python -m consumers"):
        from consumers.command import consumers

        consumers(prog_name="python -m consumers")
