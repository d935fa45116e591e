"""What Linux's /proc says about processes: memory, CPU time, children (who listens on a port:
devtools.local_services.listening_pid, which make run asks too)."""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def rss_kib(pid: int) -> int | None:
    """Resident memory (VmRSS) in KiB; None once the process is gone."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used so far."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces; the fields after its closing parenthesis do not.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def command_line(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in _PROC.iterdir() if entry.name.isdigit()]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (uvicorn's worker processes, say), nearest first."""
    parents = {child: _parent(child) for child in _all_pids()}
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop(0)
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def pid_named(name: str) -> int | None:
    """The first process whose command name (comm) is `name`."""
    for pid in _all_pids():
        try:
            if (_PROC / str(pid) / "comm").read_text().strip() == name:
                return pid
        except OSError:
            continue
    return None
