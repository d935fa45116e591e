"""Replaying failed tasks from their dead letters: over HTTP and with the `taskproc` CLI. Same
task id, a new run, attempts from 1, the history of the first run kept."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

from tests.e2e.conftest import Api
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends


async def failed_task(api: Api, receiver: WebhookReceiver) -> tuple[str, str]:
    """A webhook task that failed for good (404), whose receiver now answers 200."""
    path = f"/replay/{uuid.uuid4().hex}"
    receiver.answers[path] = [404, 200]
    task_id = await api.submit("webhook", {"url": receiver.url(path)})
    failed = await api.wait_for(task_id)
    assert failed["status"] == "failed"
    return task_id, path


def taskproc(services: Backends, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RABBITMQ_URL": services.rabbitmq_url, "LOG_LEVEL": "WARNING",
           "MONGODB_URL": services.mongodb_url, "MONGODB_DATABASE": services.mongodb_database}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_retry_over_http_runs_a_failed_task_again_and_keeps_its_history(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    task_id, _ = await failed_task(api, webhook_receiver)

    retried = await api.client.post(f"/tasks/{task_id}/retry")

    assert retried.status_code == 202
    assert retried.json() == {"task_id": task_id, "status": "queued"}
    done = await api.wait_for(task_id, "succeeded")
    assert (done["run"], done["attempt"]) == (2, 1)
    assert [(h["run"], h["status"]) for h in done["history"]] == [
        (1, "queued"), (1, "running"), (1, "failed"),
        (2, "queued"), (2, "running"), (2, "succeeded")]
    assert webhook_receiver.by_task[task_id] == 2


async def test_retry_is_refused_for_a_task_that_did_not_fail_or_does_not_exist(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    task_id = await api.submit("webhook", {"url": webhook_receiver.url("/replay/fine")})
    await api.wait_for(task_id, "succeeded")

    not_failed = await api.client.post(f"/tasks/{task_id}/retry")
    unknown = await api.client.post("/tasks/no-such-task/retry")

    assert not_failed.status_code == 409
    assert "only failed or dead tasks retry" in not_failed.json()["detail"]
    assert unknown.status_code == 404


async def test_the_cli_lists_and_replays_dead_letters(
    api: Api, webhook_receiver: WebhookReceiver, services: Backends
) -> None:
    task_id, _ = await failed_task(api, webhook_receiver)

    listed = await asyncio.to_thread(taskproc, services, "dead-letters", "list", "webhook")
    replayed = await asyncio.to_thread(
        taskproc, services, "dead-letters", "replay", "webhook", task_id)
    missing = await asyncio.to_thread(
        taskproc, services, "dead-letters", "replay", "webhook", "no-such-task")

    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(task_id)]
    assert "permanent_failure" in line
    assert "answered 404" in line
    assert line.split()[4] == "kept"
    assert replayed.returncode == 0, replayed.stderr
    [row] = [line for line in replayed.stdout.splitlines() if line.startswith(task_id)]
    assert row.split()[4] == "replayed"
    assert "1 replayed from tasks.webhook.dead" in replayed.stderr
    assert missing.returncode == 1
    assert "not found: no-such-task" in missing.stderr
    done = await api.wait_for(task_id, "succeeded")
    assert done["run"] == 2
