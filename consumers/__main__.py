"""`python -m consumers worker TYPE`: `taskproc worker TYPE` (consumers/command.py)."""

from consumers.command import consumers

if __name__ == "__main__":
    consumers(prog_name="python -m consumers")
