"""Runs one job of the load generator in its own process and hands back what it reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

OnAccepted = Callable[[str, float, float], None]


class LoadError(Exception):
    """The load generator failed."""


async def run_load(spec: dict[str, Any], log_path: Path,
                   on_accepted: OnAccepted | None = None) -> dict[str, Any]:
    """Run `spec` (see bench.load); `on_accepted(task_id, start, end)` per accepted task."""
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=log, limit=1 << 24)
    assert process.stdin is not None
    assert process.stdout is not None
    result: dict[str, Any] | None = None
    try:
        process.stdin.write(json.dumps(spec).encode())
        await process.stdin.drain()
        process.stdin.close()
        async for raw in process.stdout:
            line = raw.decode()
            if line.startswith("A ") and on_accepted is not None:
                _, task_id, start, end = line.split()
                on_accepted(task_id, float(start), float(end))
            elif line.startswith("R "):
                result = json.loads(line[2:])
        await process.wait()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if result is None:
        raise LoadError(f"the load generator exited {process.returncode} without a result; "
                        f"see {log_path}")
    return result
