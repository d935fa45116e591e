"""`python -m gateway`: `taskproc gateway` (gateway/command.py)."""

from gateway.command import command

if __name__ == "__main__":
    command(prog_name="python -m gateway")
