"""The `taskproc` executable: the command line, or one line on stderr if the registered task
types cannot be loaded (the verbs' arguments and the gateway's models are built from them as the
command line is imported)."""

from __future__ import annotations

from infra.runtime.process import registry_errors_in_one_line


def main() -> None:
    with registry_errors_in_one_line("taskproc"):
        from cli.main import main as run

        run()
