"""Celery 5 as the bench's peer: the setup a team moving to taskproc would compare it with.

One durable quorum queue on RabbitMQ (a vhost of the bench's own), persistent messages published
with confirms, `task_acks_late`, a prefork worker of 2 processes, a no-op task; with a result
backend (Redis, a database of the bench's own) and `task_track_started`, every task's state is
stored twice (STARTED, SUCCESS), as taskproc stores every status; without one, nothing is.

The worker is `celery -A bench.celerypeer worker`; the load generator and the watcher are
`python -m bench.celerypeer ROLE TASKS`, each a process of its own that prints `ready`, then
`T <name> <time.monotonic()>` for the times that matter and `C <cpu seconds>` (as bench.bare
does; the load generator's are those of the batch alone). Everything is configured by the
environment variables below, read at import, so the worker and the roles agree.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.signals import task_postrun, worker_process_init
from kombu.entity import Exchange, Queue

BROKER_ENV = "BENCH_CELERY_BROKER"  # amqp://guest:guest@127.0.0.1:5672/<vhost>
BACKEND_ENV = "BENCH_CELERY_BACKEND"  # redis://127.0.0.1:6379/<db>, or empty: no backend
DONE_FILE_ENV = "BENCH_CELERY_DONE_FILE"  # without a backend: one line per finished task
PRODUCERS_ENV = "BENCH_CELERY_PRODUCERS"

QUEUE = "bench.celery"
TASK = "bench.noop"
_DONE_LINE = 18  # "%017.6f\n": one fixed-length line per finished task (no backend)
_META_PATTERN = "celery-task-meta-*"  # the Redis backend publishes every state it stores here

_backend = os.environ.get(BACKEND_ENV) or None
_producers = int(os.environ.get(PRODUCERS_ENV, "32"))

app = Celery("bench", broker=os.environ.get(BROKER_ENV, "amqp://guest:guest@127.0.0.1//"),
             backend=_backend, set_as_current=True)
# kombu's entities have untyped constructors. A topic exchange, as taskproc's (Celery's native
# delayed delivery for quorum queues does not support direct ones).
_exchange = Exchange(QUEUE, type="topic")  # type: ignore[no-untyped-call]
_queue = Queue(QUEUE, _exchange, routing_key=QUEUE, durable=True,  # type: ignore[no-untyped-call]
               queue_arguments={"x-queue-type": "quorum"})
app.conf.update(
    task_queues=[_queue],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_default_delivery_mode="persistent",
    broker_transport_options={"confirm_publish": True},
    task_acks_late=True,
    task_track_started=_backend is not None,
    task_ignore_result=_backend is None,
    # One producer connection per load-generator thread: none waits for another's confirm.
    broker_pool_limit=max(10, _producers),
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


def noop() -> None:
    """The task: nothing, as taskproc's `sleep` with 0 s."""


noop_task: Any = app.task(name=TASK)(noop)

_done_fd: int | None = None


def _open_done_file(**_: Any) -> None:
    global _done_fd
    path = os.environ.get(DONE_FILE_ENV)
    if path:
        _done_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _count_done(**_: Any) -> None:
    if _done_fd is not None:
        os.write(_done_fd, f"{time.monotonic():017.6f}\n".encode())


if _backend is None:
    # No state stored: a finished task is counted in a file (a few µs per task).
    worker_process_init.connect(_open_done_file, weak=False)
    task_postrun.connect(_count_done, weak=False)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _cpu_s() -> float:
    used = os.times()
    return used.user + used.system


def produce(tasks: int) -> float:
    """`tasks` calls of `apply_async` from `_producers` threads, each waiting for its confirm;
    the CPU seconds the batch took (not the imports and connections before it)."""
    numbers = itertools.count()
    start = threading.Barrier(_producers + 1)
    failures: list[BaseException] = []

    def submit() -> None:
        start.wait()
        try:
            while next(numbers) < tasks:
                noop_task.apply_async()
        except BaseException as error:  # reported after the run: the count will be short
            failures.append(error)

    # Connect every producer before the clock starts, as taskproc's clients are ready too.
    held = [app.producer_pool.acquire(block=True) for _ in range(_producers)]
    for producer in held:
        producer.connection.ensure_connection()
    for producer in held:
        producer.release()
    threads = [threading.Thread(target=submit, daemon=True) for _ in range(_producers)]
    for thread in threads:
        thread.start()
    _say("ready")
    sys.stdin.readline()  # the runner starts its CPU meter, then says go
    _say(f"T first_submit {time.monotonic():.6f}")
    before = _cpu_s()
    start.wait()
    for thread in threads:
        thread.join()
    _say(f"T last_submit {time.monotonic():.6f}")
    if failures:
        raise SystemExit(f"{len(failures)} producer threads failed: {failures[0]!r}")
    return _cpu_s() - before


def watch(tasks: int) -> None:
    """Until `tasks` tasks are done: their SUCCESS seen in Redis, or counted by the worker."""
    if _backend is None:
        _watch_done_file(tasks)
        return
    client = redis.Redis.from_url(_backend)
    pubsub = client.pubsub()
    pubsub.psubscribe(_META_PATTERN)
    succeeded = 0
    for message in pubsub.listen():  # type: ignore[no-untyped-call]
        if message["type"] == "psubscribe":
            _say("ready")  # subscribed: from here every state stored is seen
            continue
        data = message.get("data")
        if message["type"] == "pmessage" and isinstance(data, bytes) and b'"SUCCESS"' in data:
            succeeded += 1
            if succeeded >= tasks:
                break
    _say(f"T last_done {time.monotonic():.6f}")
    pubsub.close()
    client.close()


def _watch_done_file(tasks: int) -> None:
    path = os.environ[DONE_FILE_ENV]

    def size() -> int:
        return os.path.getsize(path) if os.path.exists(path) else 0

    before = size()  # the lines of the tasks done before this run (the warm-up's)
    _say("ready")
    while size() < before + tasks * _DONE_LINE:
        time.sleep(0.005)
    with open(path, "rb") as found:
        found.seek(before + (tasks - 1) * _DONE_LINE)
        last = float(found.read(_DONE_LINE))
    _say(f"T last_done {last:.6f}")


_ROLES: dict[str, Callable[[int], float | None]] = {"produce": produce, "watch": watch}


def main() -> None:
    role, tasks = sys.argv[1], int(sys.argv[2])
    used = _ROLES[role](tasks)
    _say(f"C {_cpu_s() if used is None else used:.3f}")


if __name__ == "__main__":
    main()
