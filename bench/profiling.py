"""`--profile`: py-spy samples each process during the max-rate phase; the top frames by own
time (the innermost frame of each sample) say where each process spends its CPU."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or _beside_python("py-spy")


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else None


class Profiler:
    """One `py-spy record --format raw` per process, for a fixed number of seconds."""

    def __init__(self, out_dir: Path) -> None:
        self._out_dir = out_dir
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, pids: dict[str, int], seconds: int) -> None:
        executable = py_spy()
        if executable is None:
            print("  --profile: py-spy not found (pip install -e '.[dev]')", flush=True)
            return
        for name, pid in pids.items():
            out = self._out_dir / f"profile-{name}.txt"
            log = (self._out_dir / f"profile-{name}.log").open("wb")
            command = [executable, "record", "--pid", str(pid), "--nonblocking", "--format",
                       "raw", "--duration", str(seconds), "--output", str(out)]
            if name == "gateway":
                command.append("--subprocesses")  # uvicorn's worker processes, if any
            self._running[name] = (subprocess.Popen(command, stdout=log, stderr=log), out)

    def finish(self, top: int = 10) -> dict[str, list[tuple[str, float]]]:
        """Wait for every recording; each process's `top` frames by share of own samples."""
        found: dict[str, list[tuple[str, float]]] = {}
        for name, (process, out) in self._running.items():
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
            if out.exists():
                found[name] = top_frames(out, top)
        return found


def top_frames(raw: Path, top: int) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks (`a;b;c COUNT`): innermost function, share of samples."""
    own: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        own[_LINE_NUMBER.sub(")", leaf)] += int(count)
    total = sum(own.values()) or 1
    return [(frame, round(100 * samples / total, 1)) for frame, samples in own.most_common(top)]
