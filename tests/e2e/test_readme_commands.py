"""The README and docs/ followed as a new user would: `make run` in one terminal, their commands in
a second, plain one (no TASKPROC_ENV, no settings exported), each block pasted as written.

The commands come from the pages themselves, so the test breaks when they drift: the fenced
blocks that follow a `<!-- readme-test: NAME -->` marker (in README.md or a page of docs/), the
README Quick start's `make run` (through the Makefile's recipe), and every admin verb line
(`keys`, `dead-letters`, `read-model`) of any block. They run in a folder of their own whose
`.venv` is this checkout's, so `.run/` is the test's and not the developer's. Two things differ
from a user's terminal, both addresses: the gateway's port (8000 may be taken on a shared
machine) and the RabbitMQ URL of the raw-publish example (the test session's vhost, not `/`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import names
from contracts.registry import task_type_names
from infra.runtime import local_settings
from tests.e2e.conftest import system_env
from tests.support import processes
from tests.support.docs import README, ROOT, all_pages, marked_blocks
from tests.support.keys import bearer
from tests.support.readiness import wait_for_consumers, wait_for_consumers_gone, wait_for_http
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, free_port
from tests.support.waiting import eventually

README_GATEWAY = "127.0.0.1:8000"
README_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# The blocks pasted into the second terminal, in the order of use (README, then docs/).
PASTED = ["first-task-key", "first-task-submit", "first-task-status", "first-task-view",
          "http-api-answers", "command-line-verbs", "raw-publish-follow", "schemas", "asyncapi",
          "topology"]


def quick_start_command(readme: str, makefile: str) -> str:
    """What the Quick start's `make run` runs, from the Makefile's recipe."""
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = quick_start.split("```sh\n", 1)[1].split("```", 1)[0]
    assert any(line.split("#")[0].strip() == "make run" for line in first_block.splitlines())
    recipe = makefile.split("\nrun:", 1)[1].splitlines()[1].strip()
    return recipe.replace("$(BIN)", ".venv/bin")


def admin_verb_lines(readme: str) -> list[str]:
    """Every admin verb line of the pages' shell blocks, its optional `[...]` parts and comment
    dropped; lines naming a task id (`TASK_ID`) need a dead letter and are left out."""
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    found = []
    for line in (line for block in blocks for line in block.splitlines()):
        if not re.match(r"\.venv/bin/taskproc (keys|dead-letters|read-model) ", line):
            continue
        command = re.sub(r"\s*\[[^\]]*\]", "", line.split("#")[0]).strip()
        if "TASK_ID" not in command:
            found.append(command)
    return found


def second_terminal() -> dict[str, str]:
    """A plain shell: none of the settings, none of `make run`'s or the tests' variables."""
    fields = local_settings.setting_names()
    return {name: value for name, value in os.environ.items()
            if name.upper() not in fields and not name.startswith("TASKPROC_")}


@dataclass
class MakeRun:
    """`make run`'s command, running in `checkout`, its gateway on `port`."""

    checkout: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str = "make run"

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def paste(self, code: str) -> str:
        """The code as written but for the two addresses (see the module's docstring)."""
        return code.replace(README_GATEWAY, f"127.0.0.1:{self.port}")

    def shell(self, script: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `script` as if pasted into a terminal: bash reads it from its standard input, so
        a command that reads the terminal would swallow the lines after it."""
        return subprocess.run(["bash"], input=script, cwd=self.checkout, env=second_terminal(),
                              capture_output=True, text=True, timeout=timeout_s, check=False)


@pytest.fixture(scope="module")
def make_run(services: Backends, smtp_sink: SmtpSink, tmp_path_factory: pytest.TempPathFactory,
             log_dir: Path) -> Iterator[MakeRun]:
    checkout = tmp_path_factory.mktemp("readme-checkout")
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    # METRICS_PORT=0: fixed metrics ports would collide with other runs on a shared machine.
    env = system_env(services, smtp_sink, GATEWAY_PORT=str(port), METRICS_PORT="0")
    env.pop("TASKPROC_RUN_DIR", None)  # `.run/` of the checkout, as for a user
    # Those of an earlier module's processes must be gone, or they would pass for these.
    wait_for_consumers_gone(services.rabbitmq_url, {
        **{names.task_queue(name): 0 for name in task_type_names()},
        **dict.fromkeys(processes.PROJECTOR_QUEUES, 0)})
    command = quick_start_command(README.read_text(), (ROOT / "Makefile").read_text())
    log_path = log_dir / "readme-make-run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command.split(), cwd=checkout, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    running = MakeRun(checkout, port, process, log_path)
    try:
        wait_for_http(running, f"http://127.0.0.1:{port}", "/health/ready", 60.0)
        wait_for_consumers(running, services.rabbitmq_url, {
            **{names.task_queue(name): 1 for name in task_type_names()},
            **dict.fromkeys(processes.PROJECTOR_QUEUES, 1)}, 60.0)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def split_by_block(output: str) -> dict[str, str]:
    parts = re.split(r"^@@ block (\S+)\n", output, flags=re.MULTILINE)
    return {name: text.strip() for name, text in zip(parts[1::2], parts[2::2], strict=True)}


async def test_the_readme_runs_as_written_next_to_make_run(
    make_run: MakeRun, services: Backends
) -> None:
    blocks = marked_blocks(all_pages())
    assert set(PASTED) | {"raw-publish"} <= set(blocks), sorted(blocks)
    # "Saved as publish.py" (docs/messages-and-topology.md): the raw-publish example, to the
    # test session's vhost.
    language, publish = blocks["raw-publish"]
    assert language == "python"
    (make_run.checkout / "publish.py").write_text(
        publish.replace(README_AMQP_URL, services.rabbitmq_url))
    # A marker on a line of its own before each block's output (curl ends without a newline).
    script = "".join(f"printf '\\n@@ block {name}\\n'; printf '\\n@@ block {name}\\n' >&2\n"
                     f"{make_run.paste(blocks[name][1])}\n" for name in PASTED)

    ran = make_run.shell(script, timeout_s=90)

    out, err = split_by_block(ran.stdout), split_by_block(ran.stderr)
    assert set(out) == set(PASTED), f"not every block ran:\n{ran.stdout}\n{ran.stderr}"
    assert "Traceback" not in ran.stderr, ran.stderr
    task_id = out["first-task-submit"].strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), out["first-task-submit"]
    assert out["first-task-status"].strip() in {"queued", "running", "succeeded"}
    view = json.loads(out["first-task-view"])
    assert (view["task_id"], view["task_type"]) == (task_id, "send_email")
    check_http_api_answers(blocks["http-api-answers"][1], out["http-api-answers"])
    check_command_line_verbs(out["command-line-verbs"], err["command-line-verbs"])
    # The raw publish's task, read with the local key that `make run` made.
    published = json.loads(out["raw-publish-follow"])
    assert published["task_type"] == "send_email", out["raw-publish-follow"]
    schemas = json.loads((make_run.checkout / "schemas.json").read_text())
    assert "task_body" in schemas
    asyncapi = json.loads((make_run.checkout / "asyncapi.json").read_text())
    assert asyncapi["asyncapi"] == "3.0.0"
    assert json.loads((make_run.checkout / "asyncapi-from-gateway.json").read_text()) == asyncapi
    # The block's last line ran: the import did not swallow it.
    assert "topology declared on" in err["topology"], err["topology"]
    exported = json.loads((make_run.checkout / "definitions.json").read_text())
    assert {queue["vhost"] for queue in exported["queues"]} == {services.vhost}
    await follows_to_success(make_run, published["task_id"])


def check_http_api_answers(code: str, output: str) -> None:
    """The answers the README's comments give: 401, the 403 body, then 404 and 429."""
    forbidden = next(line for line in code.splitlines() if line.startswith("# 403 "))
    expected = ["401", forbidden.removeprefix("# 403 ") + "404", "429"]
    assert "# 404, then 429" in code
    assert output.splitlines() == expected, output


def check_command_line_verbs(output: str, errors: str) -> None:
    """`watch` ends with the task succeeded, `cancel` of an ended task is a 409 in one line,
    the schedule is listed."""
    assert re.search(r"^\[#{30}\] 100% succeeded \(attempt 1\)$", output, re.MULTILINE), output
    assert "status:   succeeded" in output
    assert "'slept_s': 3.0" in output
    assert re.search(r"^error: conflict \(409\): .*$", errors, re.MULTILINE), errors
    listed = r"^\S+ +send_email +cron 0 2 \* \* \* Europe/Paris +active .* nightly$"
    assert re.search(listed, output, re.MULTILINE), output


async def follows_to_success(make_run: MakeRun, task_id: str) -> None:
    key = (make_run.checkout / ".run" / "api-key").read_text().strip()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{make_run.port}",
                                 headers=bearer(key), timeout=10) as http:

        async def succeeded() -> dict[str, Any] | None:
            view: dict[str, Any] = (await http.get(f"/tasks/{task_id}")).json()
            return view if view.get("status") == "succeeded" else None

        await eventually(succeeded, what="the raw-published task to succeed")


def test_every_admin_verb_of_the_readme_runs_as_written(make_run: MakeRun) -> None:
    lines = admin_verb_lines(all_pages())
    assert {line.split()[1] for line in lines} == {"keys", "dead-letters", "read-model"}
    created_key: list[str] = []
    for line in lines:
        if " keys revoke " in line:
            # The README's key id is an example: revoke the key its `keys create` made.
            assert created_key, "the README revokes a key before it creates one"
            line = re.sub(r"revoke \S+", f"revoke {created_key[0]}", line)
        ran = make_run.shell(line)
        assert ran.returncode == 0, f"{line}: {ran.stderr}"
        assert "Traceback" not in ran.stderr, ran.stderr
        made = re.search(r"^key (\S+) for tenant", ran.stderr, re.MULTILINE)
        if " keys create " in line and made:
            created_key.append(made[1])


def test_make_run_says_which_mongodb_it_uses_and_where_the_task_page_is(
    make_run: MakeRun,
) -> None:
    log = make_run.log()

    # The session's server was running before: reused, and the log says whose it is.
    assert re.search(r"MongoDB-protocol server already running on 127\.0\.0\.1:\d+: using it, "
                     r"not started here \(pid \d+: .*, data in ", log), log
    assert f"task page http://127.0.0.1:{make_run.port}/ui" in log
    assert "settings for the command line in " in log
