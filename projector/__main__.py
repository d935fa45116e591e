"""`python -m projector`: `taskproc projector` (projector/command.py)."""

from projector.command import command

if __name__ == "__main__":
    command(prog_name="python -m projector")
