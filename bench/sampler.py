"""Memory and CPU of the system's processes over a phase, sampled from /proc."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.stats import slope
from tests.support.procfs import cpu_seconds, rss_kib

# "Flat" memory: the fitted growth over the soak is under both bounds.
FLAT_FRACTION = 0.05
FLAT_KIB = 20 * 1024


class CpuMeter:
    """CPU each process used between `start()` and `stop()`, as cores."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._before: dict[str, float] = {}
        self._began = 0.0
        self.used_s: dict[str, float] = {}  # CPU seconds by process, set by `stop()`

    def start(self) -> None:
        self._began = time.monotonic()
        self._before = {name: cpu for name, pid in self._pids.items()
                        if (cpu := cpu_seconds(pid)) is not None}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._began
        used: dict[str, float] = {}
        self.used_s = {}
        for name, before in self._before.items():
            after = cpu_seconds(self._pids[name])
            if after is not None and wall > 0:
                used[name] = round((after - before) / wall, 2)
                self.used_s[name] = after - before
        return used

    def ms_per_task(self, tasks: int) -> dict[str, float]:
        """CPU milliseconds per task by process over the last `start()`..`stop()`."""
        if tasks <= 0:
            return {}
        return {name: round(1000 * used / tasks, 3) for name, used in self.used_s.items()}


async def sample_rss(pids: Callable[[], dict[str, int]], every_s: float, stop: asyncio.Event,
                     ) -> dict[str, list[tuple[float, int]]]:
    """(minutes since start, KiB) per process every `every_s` seconds until `stop` is set."""
    samples: dict[str, list[tuple[float, int]]] = {}
    began = time.monotonic()
    while True:
        minutes = (time.monotonic() - began) / 60
        for name, pid in pids().items():
            rss = rss_kib(pid)
            if rss is not None:
                samples.setdefault(name, []).append((minutes, rss))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return samples
        except TimeoutError:
            continue


def memory_trend(points: list[tuple[float, int]]) -> dict[str, Any]:
    """Start, end, max, fitted slope and whether the fitted growth over the run is flat."""
    fitted = slope([(x, float(y)) for x, y in points])
    duration = points[-1][0] - points[0][0] if points else 0.0
    start = points[0][1] if points else 0
    growth = (fitted or 0.0) * duration
    flat = growth < FLAT_FRACTION * start and growth < FLAT_KIB
    return {"samples": len(points), "start_kib": start,
            "end_kib": points[-1][1] if points else None,
            "max_kib": max(y for _, y in points) if points else None,
            "slope_kib_per_min": None if fitted is None else round(fitted, 1),
            "fitted_growth_kib": round(growth), "flat": flat if len(points) >= 3 else None,
            "points": [(round(x, 2), y) for x, y in points]}
