"""A task type from a package of its own: examples/thumbnail, installed beside taskproc and
registered by nothing but its entry point, runs on the real processes as a built-in type does.

The example is installed with pip into a folder of the test's own (its dist-info, with the entry
point, lands there too) and the processes are started with that folder on PYTHONPATH: the shared
virtualenv and every file of taskproc are left as they are. The processes use a vhost of their
own, so the type's exchange and queues go with it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from contracts import names
from tests.e2e.conftest import Api, System, running_system, system_env
from tests.support.docs import ROOT
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, local_vhost

EXAMPLE = ROOT / "examples" / "thumbnail"
IMAGE_URL = "https://images.example.com/cat.jpg"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/thumbnail installed into a folder of its own; the folder.

    pip builds the package from a copy, so the build leaves nothing in the source tree; it builds
    in isolation, with setuptools and wheel from the package index, as a user's install would."""
    work = tmp_path_factory.mktemp("thumbnail-example")
    source = shutil.copytree(EXAMPLE, work / "source")
    site = work / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return site


def with_site(env: dict[str, str], site: Path) -> dict[str, str]:
    """`env` with `site` first on PYTHONPATH."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                               env.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def backends(services: Backends) -> Iterator[Backends]:
    """The session's database, and a vhost of this module's own where RabbitMQ is local."""
    if not services.local_broker:
        yield services
        return
    with local_vhost() as (url, vhost):
        yield dataclasses.replace(services, rabbitmq_url=url, vhost=vhost)


@pytest.fixture(scope="module")
def system(backends: Backends, smtp_sink: SmtpSink, example_site: Path,
           module_log_dir: Path) -> Iterator[System]:
    """The gateway, the projector and a `thumbnail` worker, each finding the type by the
    example's entry point alone (no TASK_MODULES)."""
    env = with_site(system_env(backends, smtp_sink), example_site)
    env.pop("TASK_MODULES", None)
    yield from running_system(env, module_log_dir, ["thumbnail"])


def expected_result(url: str, width: int, height: int) -> dict[str, object]:
    """What the handler's result names, worked out here from its documented rule."""
    return {"name": f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{width}x{height}.png",
            "width": width, "height": height}


async def test_a_thumbnail_task_submitted_over_http_succeeds_with_the_handlers_result(
    api: Api,
) -> None:
    task_id = await api.submit("thumbnail", {"image_url": IMAGE_URL, "width": 320})

    done = await api.wait_for(task_id)

    assert (done["task_type"], done["status"], done["source"]) == ("thumbnail", "succeeded", "http")
    assert {key: done["result"][key] for key in ("name", "width", "height")} == expected_result(
        IMAGE_URL, 320, 240)
    assert done["result"]["bytes"] > 0


async def test_a_thumbnail_task_published_straight_to_its_exchange_succeeds(
    api: Api, backends: Backends,
) -> None:
    task_id = f"direct-{uuid.uuid4()}"
    body = {"payload": {"image_url": IMAGE_URL, "width": 64, "height": 64}}

    connection = await aio_pika.connect(backends.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.task_exchange("thumbnail"), ensure=False)
        await exchange.publish(aio_pika.Message(
            json.dumps(body).encode(), content_type="application/json", message_id=task_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")
    done = await api.wait_for(task_id)

    assert (done["status"], done["source"]) == ("succeeded", "amqp")
    assert {key: done["result"][key] for key in ("name", "width", "height")} == expected_result(
        IMAGE_URL, 64, 64)


async def test_a_url_that_is_not_an_image_fails_at_once(api: Api) -> None:
    task_id = await api.submit("thumbnail", {"image_url": "https://example.com/a.html",
                                             "width": 100})

    done = await api.wait_for(task_id)

    assert (done["status"], done["attempt"]) == ("failed", 1)
    assert "not an image URL" in done["error"]["message"]


async def test_an_invalid_thumbnail_payload_is_a_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    refused = await http.post("/tasks", json={"task_type": "thumbnail",
                                              "payload": {"image_url": IMAGE_URL, "width": 0}})

    assert refused.status_code == 422, refused.text
    assert [problem["loc"][-2:] for problem in refused.json()["detail"]] == [["payload", "width"]]


async def test_the_openapi_document_shows_the_thumbnail_payload(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()

    schemas = document["components"]["schemas"]
    assert set(schemas["Thumbnail"]["properties"]) == {"image_url", "width", "height"}
    assert schemas["Thumbnail"]["examples"] == [{"image_url": IMAGE_URL,
                                                 "width": 320}]
    assert schemas["ThumbnailTask"]["properties"]["payload"] == {
        "$ref": "#/components/schemas/Thumbnail"}


def test_the_gateway_imports_the_task_module_but_not_what_only_its_handler_needs(
    example_site: Path,
) -> None:
    probe = ("import json, sys\n"
             "import gateway.app\n"
             "from contracts.registry import task_type_names\n"
             "print(json.dumps([task_type_names(),\n"
             "                  [m for m in ('thumbnails.tasks', 'thumbnails.render')\n"
             "                   if m in sys.modules]]))\n")
    env = with_site({k: v for k, v in os.environ.items()
                     if k not in ("TASK_MODULES", "DISABLED_TASK_TYPES")}, example_site)

    ran = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=60, check=False)

    assert ran.returncode == 0, ran.stderr
    registered, imported = json.loads(ran.stdout)
    assert "thumbnail" in registered
    assert imported == ["thumbnails.tasks"]
