"""Which of taskproc's files one task passes through, from `POST /tasks` until `GET /tasks/{id}`
answers `succeeded`: the count behind the "Following one task" section of docs/design.md.

It runs the gateway (in process, over ASGI), a `sleep` worker and the projector on one event
loop against the local services (`taskproc services`), each built by its own composition root,
in a RabbitMQ vhost and a MongoDB database of its own. A profiler notes the file of every
Python function called while one task goes through (startup and shutdown are not counted), and
this prints the repository's files among them, by package. Run it as
`.venv/bin/python -m devtools.task_path`.

The count is an upper bound on what a reader must open to follow the task: it includes every
helper the path calls, and whatever the processes' own timers run in that window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import httpx

from consumers.bootstrap import run_worker
from gateway.app import create_app
from infra.composition import mongo_adapters
from infra.mongodb.client import mongo_client
from infra.rabbitmq.management import credentials_of, management
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from service.api_keys import create_key
from service.auth import DEFAULT_TENANT, SCOPES

ROOT = Path(__file__).resolve().parent.parent
_THIS_FILE = "devtools/task_path.py"


class FileRecorder:
    """Notes the repository files whose functions are called while it is on."""

    def __init__(self, root: Path) -> None:
        self._root = str(root) + "/"
        self._venv = str(root / ".venv")
        self.files: set[str] = set()
        self.functions: dict[str, set[str]] = {}

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        name = frame.f_code.co_filename
        if name.startswith(self._root) and not name.startswith(self._venv):
            relative = name[len(self._root):]
            self.files.add(relative)
            self.functions.setdefault(relative, set()).add(frame.f_code.co_qualname)

    @asynccontextmanager
    async def on(self) -> AsyncIterator[None]:
        sys.setprofile(self)
        try:
            yield
        finally:
            sys.setprofile(None)


async def follow_one_task(settings: SystemSettings) -> dict[str, set[str]]:
    """The functions one `sleep` task's code ran, by file, submitted over HTTP and read back."""
    stop = asyncio.Event()
    processes = [asyncio.create_task(run_worker(settings, "sleep", stop=stop)),
                 asyncio.create_task(run_projector(settings, stop=stop))]
    app = create_app(settings)
    recorder = FileRecorder(ROOT)
    headers = {"Authorization": f"Bearer {await _new_key(settings)}"}
    try:
        async with (app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), headers=headers,
                                      base_url="http://gateway") as http):
            await _submit_and_wait(http)  # the first task warms every cache and connection
            async with recorder.on():
                await _submit_and_wait(http)
    finally:
        stop.set()
        await asyncio.gather(*processes, return_exceptions=True)
    return recorder.functions


async def _new_key(settings: SystemSettings) -> str:
    mongo = mongo_adapters(settings)
    try:
        issued = await create_key(mongo.api_keys, tenant=DEFAULT_TENANT, scopes=frozenset(SCOPES))
    finally:
        await mongo.close()
    return issued.token


async def _submit_and_wait(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks", json={"task_type": "sleep", "payload": {"seconds": 0}})
    response.raise_for_status()
    task_id = response.json()["task_id"]
    for _ in range(1_000):
        status = (await http.get(f"/tasks/{task_id}")).json()["status"]
        if status == "succeeded":
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"task {task_id} did not succeed within 10 s (last: {status})")


def _report(functions: dict[str, set[str]], *, verbose: bool) -> str:
    files = sorted(name for name in functions if name != _THIS_FILE)
    by_package: dict[str, list[str]] = {}
    for name in files:
        by_package.setdefault(name.split("/", 1)[0], []).append(name)
    lines = [f"{len(files)} files of the repository ran for one task, POST to GET succeeded:"]
    for package, names in by_package.items():
        lines.append(f"  {package} ({len(names)}): " + ", ".join(
            name.removeprefix(package + "/") for name in names))
    if verbose:
        lines += [f"{name}: {', '.join(sorted(functions[name]))}" for name in files]
    return "\n".join(lines)


async def _in_scratch_space(base: SystemSettings) -> dict[str, set[str]]:
    """`follow_one_task` in a RabbitMQ vhost and a MongoDB database made for it, then removed."""
    scratch = f"task-path-{uuid.uuid4().hex[:8]}"
    user, _ = credentials_of(base.rabbitmq_url)
    async with management(base.rabbitmq_management_url, base.rabbitmq_url) as admin:
        await admin.put_vhost(scratch)
        await admin.put_permissions(scratch, user, {"configure": ".*", "write": ".*",
                                                    "read": ".*"})
        try:
            url = httpx.URL(base.rabbitmq_url).copy_with(path="/" + scratch)
            return await follow_one_task(base.model_copy(update={
                "rabbitmq_url": str(url), "mongodb_database": scratch}))
        finally:
            await _delete_vhost(base, scratch)
            async with mongo_client(base.mongodb_url, base.mongodb_timeout_s) as client:
                await client.drop_database(scratch)


async def _delete_vhost(base: SystemSettings, vhost: str) -> None:
    # Not a verb of infra's Management: production never deletes a vhost.
    async with httpx.AsyncClient(base_url=base.rabbitmq_management_url,
                                 auth=credentials_of(base.rabbitmq_url)) as client:
        response = await client.delete(f"/api/vhosts/{quote(vhost, safe='')}")
        if response.status_code not in (204, 404):
            raise RuntimeError(f"scratch vhost {vhost} not deleted: HTTP {response.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.task_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", action="store_true",
                        help="also list the functions that ran in each file")
    verbose = parser.parse_args().functions
    # The development profile: guest on this machine, as `taskproc run` runs.
    os.environ.setdefault("TASKPROC_ENV", "development")
    print(_report(asyncio.run(_in_scratch_space(SystemSettings())), verbose=verbose))


if __name__ == "__main__":
    main()
