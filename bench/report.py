"""The one table of figures, each with its target and whether it was met, and the JSON file."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sampler import FLAT_FRACTION, FLAT_KIB

Stores = dict[str, dict[str, Any]]
_WITHIN = 0.20  # the 1M-store figures may differ from the 10k ones by this much


@dataclass(frozen=True)
class Figure:
    """A row measured at both stores: where to find it, its bound, its direction."""

    name: str
    path: tuple[str, ...]
    bound: float | None
    higher_is_better: bool
    unit: str = ""

    @property
    def target(self) -> str:
        if self.bound is None:
            return "(info)"
        sign = "≥" if self.higher_is_better else "≤"
        return f"{sign} {self.bound:,g}{self.unit}"

    def value(self, store: dict[str, Any] | None) -> float | None:
        found: Any = store
        for key in self.path:
            if not isinstance(found, dict):
                return None
            found = found.get(key)
        return float(found) if isinstance(found, int | float) else None

    def meets(self, value: float | None) -> bool | None:
        if self.bound is None or value is None:
            return None
        better: Callable[[float, float], bool] = operator.ge if self.higher_is_better else \
            operator.le
        return better(value, self.bound)


FIGURES = (
    Figure("end to end, no-op tasks (tasks/s)", ("e2e", "tasks_per_s"), 1000, True),
    Figure("POST /tasks, 32 clients (accepted/s)", ("e2e", "post", "accepted_per_s"), 2000,
           True),
    Figure("POST /tasks, 32 clients, p99 (ms)", ("e2e", "post", "latency", "p99_ms"), 100,
           False),
    Figure("submit -> succeeded seen, p50 (ms)", ("latency", "probes", "p50_ms"), 10, False),
    Figure("submit -> succeeded seen, p99 (ms)", ("latency", "probes", "p99_ms"), 50, False),
)
QUIET_FIGURES = (
    Figure("submit -> succeeded seen, 20 tasks/s, p50 (ms)",
           ("quiet_latency", "probes", "p50_ms"), None, False),
    Figure("submit -> succeeded seen, 20 tasks/s, p99 (ms)",
           ("quiet_latency", "probes", "p99_ms"), None, False),
)
GET_FIGURES = (
    Figure("GET /tasks/{id}, 1 client, p50 (ms)", ("get", "sequential", "latency", "p50_ms"),
           2, False),
    Figure("GET /tasks/{id}, 1 client, p99 (ms)", ("get", "sequential", "latency", "p99_ms"),
           None, False),
    Figure("GET /tasks/{id}, 32 clients, p50 (ms)",
           ("get", "concurrent", "latency", "p50_ms"), None, False),
    Figure("GET /tasks/{id}, 32 clients, p99 (ms)",
           ("get", "concurrent", "latency", "p99_ms"), None, False),
    Figure("GET /tasks/{id}, 32 clients (answers/s)", ("get", "concurrent", "per_s"), None,
           True),
)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _verdict(parts: list[tuple[str, bool | None]]) -> str:
    known = [(label, ok) for label, ok in parts if ok is not None]
    if not known:
        return "-"
    overall = "yes" if all(ok for _, ok in known) else "NO"
    each = ", ".join(f"{label} {'yes' if ok else 'no'}" for label, ok in known)
    return f"{overall} ({each})"


def _change(small: float | None, big: float | None) -> float | None:
    if small is None or big is None or small == 0:
        return None
    return (big - small) / small


def _figure_row(figure: Figure, stores: Stores, *, compare: bool) -> list[str]:
    small, big = figure.value(stores.get("10k")), figure.value(stores.get("1m"))
    big_text = _number(big)
    parts = [("10k", figure.meets(small)), ("1M", figure.meets(big))]
    change = _change(small, big)
    if compare and change is not None:
        big_text += f" ({change:+.0%})"
        # Worse by more than 20 % fails; better by any amount does not.
        worse = -change if figure.higher_is_better else change
        parts.append(("Δ≤20%", worse <= _WITHIN))
    if figure.bound is None and not compare:
        parts = []
    return [figure.name, figure.target, _number(small), big_text, _verdict(parts)]


def rows(results: dict[str, Any]) -> list[list[str]]:
    stores: Stores = results.get("stores", {})
    table = [_figure_row(figure, stores, compare=True) for figure in FIGURES]
    table += [_figure_row(figure, stores, compare=False) for figure in QUIET_FIGURES]
    table += [_figure_row(figure, stores, compare=False) for figure in GET_FIGURES]
    # The GET target is stated for the 1M store only.
    big_get = GET_FIGURES[0].value(stores.get("1m"))
    table[len(FIGURES) + len(QUIET_FIGURES)][4] = _verdict([("1M", GET_FIGURES[0].meets(big_get))])
    table += _bare_rows(results, stores)
    table += _celery_rows(results, stores)
    table += _memory_rows(results)
    table += _generator_rows(results, stores)
    return table


def _bare_rows(results: dict[str, Any], stores: Stores) -> list[list[str]]:
    bare = results.get("bare") or {}
    rate = bare.get("tasks_per_s")
    ratios = []
    for key in ("10k", "1m"):
        system = FIGURES[0].value(stores.get(key))
        ratios.append(None if system is None or not rate else system / rate)
    return [
        ["bare aio-pika chain (tasks/s)", "(info)", _number(rate), "(same chain)", "-"],
        ["system e2e / bare chain", "(info)", _ratio(ratios[0]), _ratio(ratios[1]), "-"],
    ]


CELERY_RATIO_BOUND = 1.0  # issue 21: taskproc at least as fast as Celery with its state stored
_CELERY_NAMES = {"state": "Celery 5, quorum + confirms + Redis state (tasks/s)",
                 "no_state": "Celery 5, quorum + confirms, no result backend (tasks/s)"}
_CPU_LABELS = {"celery-worker": "worker", "redis": "Redis", "rabbitmq": "RabbitMQ"}


def _cpu_text(per_task: dict[str, float] | None, total: float | None) -> str:
    if total is None:
        return "-"
    largest = sorted((per_task or {}).items(), key=operator.itemgetter(1), reverse=True)[:5]
    parts = ", ".join(f"{_CPU_LABELS.get(name, name)} {value:.2f}" for name, value in largest
                      if value >= 0.005)
    return f"{total:.2f} ({parts})" if parts else f"{total:.2f}"


def _celery_rows(results: dict[str, Any], stores: Stores) -> list[list[str]]:
    """Celery's rates, taskproc's ratio to Celery-with-state, and both CPU costs per task."""
    celery = results.get("celery") or {}
    table = [[_CELERY_NAMES[variant], "(info)",
              _number((celery.get(variant) or {}).get("tasks_per_s")), "(same run)", "-"]
             for variant in ("state", "no_state")]
    rate = (celery.get("state") or {}).get("tasks_per_s")
    ratios = []
    for key in ("10k", "1m"):
        system = FIGURES[0].value(stores.get(key))
        ratios.append(None if system is None or not rate else system / rate)
    verdict = _verdict([(label, None if ratio is None else ratio >= CELERY_RATIO_BOUND)
                        for label, ratio in zip(("10k", "1M"), ratios, strict=True)])
    table.append(["taskproc e2e / Celery (same run)", f"≥ {CELERY_RATIO_BOUND:g}x",
                  _ratio(ratios[0]), _ratio(ratios[1]), verdict])
    cells = []
    for key in ("10k", "1m"):
        e2e = (stores.get(key) or {}).get("e2e") or {}
        cells.append(_cpu_text(_grouped_cpu(e2e.get("cpu_ms_per_task")),
                               e2e.get("cpu_ms_per_task_total")))
    table.append(["CPU per task (ms), taskproc e2e: its processes + nx-27017 + RabbitMQ",
                  "(info)", cells[0], cells[1], "-"])
    for variant, what in (("state", "Redis state"), ("no_state", "no backend")):
        found = celery.get(variant) or {}
        table.append([f"CPU per task (ms), Celery, {what}: worker + Redis + RabbitMQ", "(info)",
                      _cpu_text(found.get("cpu_ms_per_task"), found.get("cpu_ms_per_task_total")),
                      "(same run)", "-"])
    return table


def _grouped_cpu(per_task: dict[str, float] | None) -> dict[str, float]:
    """taskproc's processes with their children (a uvicorn worker, say) as one figure each."""
    grouped: dict[str, float] = {}
    for name, value in (per_task or {}).items():
        key = name.split("/", 1)[0]
        grouped[key] = grouped.get(key, 0.0) + value
    return grouped


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _memory_rows(results: dict[str, Any]) -> list[list[str]]:
    soak = (results.get("stores", {}).get("10k") or {}).get("soak") or {}
    minutes = soak.get("minutes")
    target = f"flat (fit < {FLAT_FRACTION:.0%} & < {FLAT_KIB // 1024} MiB)"
    found = []
    for name, trend in sorted((soak.get("memory") or {}).items()):
        mib = trend["start_kib"] / 1024, (trend["end_kib"] or 0) / 1024, \
            (trend["max_kib"] or 0) / 1024
        text = (f"{mib[0]:.0f}->{mib[1]:.0f} MiB, max {mib[2]:.0f}, "
                f"{_number(trend['slope_kib_per_min'])} KiB/min")
        flat = trend["flat"]
        verdict = "-" if flat is None else ("yes" if flat else "NO (grows)")
        found.append([f"RSS {name} ({minutes:g} min soak)", target, text, "-", verdict])
    return found


def _generator_rows(results: dict[str, Any], stores: Stores) -> list[list[str]]:
    cells = []
    for key in ("10k", "1m"):
        generator = ((stores.get(key) or {}).get("e2e") or {}).get("generator") or {}
        cores = generator.get("cores")
        cells.append("-" if cores is None else f"{cores:.2f} cores ({generator['client']})")
    table = [["load generator CPU, e2e phase", "(info)", cells[0], cells[1], "-"]]
    state = (results.get("celery") or {}).get("state") or {}
    used, seconds = state.get("generator_cpu_s"), state.get("seconds")
    if used is not None and seconds:
        table.append(["Celery load generator CPU, Redis state (apply_async, batch only)", "(info)",
                      f"{used / seconds:.2f} cores ({1000 * used / state['tasks']:.2f} ms/task)",
                      "(same run)", "-"])
    return table


LEGEND = (f"Δ≤20%: the 1M-store figure is at most {_WITHIN:.0%} worse than the 10k one (better "
          f"by any amount passes). flat: the least-squares RSS growth over the soak is under "
          f"{FLAT_FRACTION:.0%} of the start and under {FLAT_KIB // 1024} MiB. POST figures come "
          f"from the end-to-end run (consumers running); latency runs at half that store's "
          f"max e2e rate.\n"
          f"Celery peer (same run, after the 10k store; as many tasks as its e2e phase): Celery 5 "
          f"on the same RabbitMQ, a vhost of its own, one durable quorum queue, persistent "
          f"messages with publisher confirms, task_acks_late, a no-op task, a worker with "
          f"--pool prefork --concurrency 2 (default prefetch; log level WARNING, no line per task, "
          f"as taskproc's default); 'Redis state': result backend "
          f"Redis 127.0.0.1:6379 db 12 (flushed before and after) with task_track_started, so "
          f"STARTED and SUCCESS are stored per task; 'no result backend': ignore_result. No HTTP "
          f"(Celery has no gateway): one load-generator process calls apply_async from as "
          f"many threads as taskproc has HTTP clients (32 by default), each waiting for its "
          f"confirm; with the Redis backend apply_async also subscribes to the task's result "
          f"channel, as Celery does. tasks/s: first submit to the last SUCCESS seen in "
          f"Redis (pub/sub), or to the worker's last finished task without a backend. CPU per "
          f"task from /proc over the measured batch: Celery's worker (main + 2 children), Redis, "
          f"RabbitMQ; taskproc's over its e2e phase, all its processes, nx-27017, RabbitMQ "
          f"(neither counts its load generator).")


def header(results: dict[str, Any]) -> str:
    """The machine and settings the figures were measured with."""
    found, options = results["machine"], results["options"]
    tasks = (results["stores"].get("10k") or {}).get("e2e", {}).get("tasks")
    return "\n".join([
        f"machine: {found['cores']} cores, load average before start "
        f"{found['load_average']}, commit {found['commit']}",
        f"settings: {results['settings'] or 'defaults'} (the bench sets RABBITMQ_URL, "
        f"MONGODB_DATABASE, GATEWAY_PORT); e2e {tasks} tasks, {options['clients']} clients, "
        f"{options['client']} HTTP client; soak {options['soak_minutes']} min",
    ])


def render(table: list[list[str]]) -> str:
    header = ["figure", "target", "at 10,000 stored", "at 1,000,000 stored", "met?"]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in table)])


def write_json(results: dict[str, Any], table: list[list[str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "table": table}, indent=2, default=str) + "\n")
