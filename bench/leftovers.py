"""What a bench run holds outside itself (processes, vhosts, databases), written down so a run
that was killed outright is cleaned up by the next one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from tests.support.procfs import command_line


class Leftovers:
    """A small JSON file of `kind -> [values]`; every change is written at once."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _load(self) -> dict[str, list[str]]:
        try:
            found: dict[str, list[str]] = json.loads(self._path.read_text())
            return found
        except (OSError, ValueError):
            return {}

    def _save(self, held: dict[str, list[str]]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps(held))

    def hold(self, kind: str, value: str) -> None:
        held = self._load()
        held.setdefault(kind, [])
        if value not in held[kind]:
            held[kind].append(value)
        self._save(held)

    def release(self, kind: str, value: str) -> None:
        held = self._load()
        if value in held.get(kind, []):
            held[kind].remove(value)
        self._save(held)

    def held(self, kind: str) -> list[str]:
        return list(self._load().get(kind, []))


def kill_stale_process(entry: str) -> bool:
    """Kill a process recorded as `pid:marker`, only if it still runs that command."""
    pid_text, _, marker = entry.partition(":")
    pid = int(pid_text)
    if marker not in " ".join(command_line(pid)):
        return False  # gone, or the pid now belongs to someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True
