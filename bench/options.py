"""The bench's command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

RUN_DIR = Path(".run/bench")


@dataclass(frozen=True, kw_only=True)
class Options:
    tasks: int | None  # None: about `e2e_seconds` of work at the warm-up rate
    clients: int
    soak_minutes: float
    quick: bool
    skip_1m: bool
    json_path: Path
    profile: bool
    client: str
    small: int
    big: int
    run_dir: Path = RUN_DIR

    @property
    def warmup_tasks(self) -> int:
        return 150 if self.quick else 300

    @property
    def e2e_seconds(self) -> float:
        return 5 if self.quick else 20

    @property
    def task_bounds(self) -> tuple[int, int]:
        return (300, 3000) if self.quick else (1000, 20_000)

    @property
    def bare_tasks(self) -> int:
        return 3000 if self.quick else 20_000

    @property
    def latency_seconds(self) -> float:
        return 10 if self.quick else 30

    @property
    def get_seconds(self) -> float:
        return 3 if self.quick else 10

    @property
    def big_database(self) -> str:
        return "taskproc_bench_1m" if self.big == 1_000_000 else f"taskproc_bench_{self.big}"

    @property
    def small_database(self) -> str:
        return "taskproc_bench_10k"


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the local stack: end to end, POST, latency, GET, memory, and "
                    "the bare aio-pika chain and Celery (peers in the same run); prints one "
                    "table and writes it as JSON.")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few tasks, 1-minute soak, no 1M store unless filled")
    parser.add_argument("--skip-1m", action="store_true", help="skip the 1,000,000-task store")
    parser.add_argument("--soak-minutes", type=float, default=None,
                        help="length of the memory soak (default 10, 1 with --quick)")
    parser.add_argument("--tasks", type=int, default=None,
                        help="tasks in the end-to-end run (default: ~20 s of work)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="HTTP client of the load generator (raw asyncio is ~5x cheaper)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy each process during the max-rate phase")
    parser.add_argument("--big-store", type=int, default=1_000_000,
                        help=argparse.SUPPRESS)  # a smaller "1M" store, to try the bench out
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    soak = args.soak_minutes if args.soak_minutes is not None else (1 if args.quick else 10)
    return Options(tasks=args.tasks, clients=args.clients, soak_minutes=soak, quick=args.quick,
                   skip_1m=args.skip_1m, json_path=args.json or RUN_DIR / f"bench-{stamp}.json",
                   profile=args.profile, client=args.client, small=10_000, big=args.big_store)
