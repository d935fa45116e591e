"""The task page in a real headless Chromium (Debian's `chromium`, driven by Playwright) against
the real processes: it lists a submitted task, follows its status without a reload, and cancels
a running task."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from tests.e2e.conftest import Api, System
from tests.e2e.test_replay import failed_task
from tests.support.receivers import WebhookReceiver
from tests.support.services import ON_CI

# Where the README's screenshot comes from: `TASKPROC_UI_SCREENSHOT=docs/ui.png pytest
# tests/e2e/test_task_page.py` rewrites it; otherwise it goes to the module's log directory.
SCREENSHOT_ENV = "TASKPROC_UI_SCREENSHOT"
LABEL = "ui-e2e"


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if ON_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def page_errors() -> list[str]:
    """What the page logged as an error, and each answer of 400 or more it got: none, unless a
    test expects some and takes them out."""
    return []


@pytest.fixture(scope="module")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    """One headless Chromium for the module (a launch costs about 2 s); each test gets a fresh
    context, so no cookie, storage or route of one test reaches the next."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, system: System, api_key: str,
               page_errors: list[str]) -> AsyncIterator[Page]:
    """The task page, opened and given the test's key through its form."""
    context = await browser.new_context(viewport={"width": 1360, "height": 760})
    try:
        page = await context.new_page()
        errors = page_errors
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text)
                if message.type == "error" else None)
        page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
                if response.status >= 400 else None)
        await page.goto(f"{system.url}/ui")
        await page.fill("#key-input", api_key)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#app")).to_be_visible()
        await expect(page.locator("#key-form")).to_be_hidden()
        yield page
        assert errors == [], f"the page logged errors: {errors}"
    finally:
        await context.close()


def row_status(page: Page, task_id: str) -> str:
    return f'#tasks tr[data-task-id="{task_id}"] .status'


async def test_the_page_is_served_by_the_real_gateway_under_its_csp(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.url) as client:
        answer = await client.get("/ui")
        script = await client.get("/ui/static/ui.js")
        other = await client.get("/ui/static/..%2Fapp.py")

    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert other.status_code == 404


async def test_a_refused_key_brings_the_key_form_back(page: Page, page_errors: list[str]) -> None:
    await page.evaluate("sessionStorage.setItem('taskproc.apiKey', 'tp_not_a_real_key')")

    await page.reload()

    await expect(page.locator("#notice")).to_contain_text("refused")
    await expect(page.locator("#key-form")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('taskproc.apiKey')") is None
    assert any(error.startswith("401 ") for error in page_errors)
    page_errors.clear()


async def test_the_list_follows_a_task_to_its_end_without_a_reload(page: Page, api: Api) -> None:
    await page.evaluate("window.loadedOnce = true")
    await page.fill("#filter-label", LABEL)
    await page.dispatch_event("#filters", "change")
    unlabelled = await api.submit("sleep", {"seconds": 0})
    # Longer than one refresh period (2 s), so one refresh lands while it runs.
    task_id = await api.submit("sleep", {"seconds": 3}, labels=[LABEL])

    status = page.locator(row_status(page, task_id))
    await expect(status).to_have_text("running", timeout=10_000)
    await expect(status).to_have_text("succeeded", timeout=10_000)

    assert await page.evaluate("window.loadedOnce") is True  # the same document: no reload
    assert await page.locator(f'#tasks tr[data-task-id="{unlabelled}"]').count() == 0


async def test_a_running_task_is_cancelled_from_its_detail(
    page: Page, api: Api, module_log_dir: Path
) -> None:
    task_id = await api.submit("sleep", {"seconds": 120}, labels=[LABEL, "nightly"])
    await api.wait_for(task_id, "running")
    await page.click(f'#tasks tr[data-task-id="{task_id}"]')
    await expect(page.locator("#d-id")).to_have_text(task_id)
    await expect(page.locator("#d-status")).to_have_text("running")

    await page.click("#cancel")

    await expect(page.locator("#d-status")).to_have_text("cancelled", timeout=10_000)
    await expect(page.locator(row_status(page, task_id))).to_have_text("cancelled")
    await expect(page.locator("#d-history li").last).to_contain_text("cancelled")
    await expect(page.locator("#cancel")).to_be_hidden()
    assert (await api.task(task_id) or {})["status"] == "cancelled"
    target = Path(os.environ.get(SCREENSHOT_ENV) or module_log_dir / "ui.png")
    await page.screenshot(path=str(target), full_page=True)


async def test_a_failed_task_shows_its_error_and_is_replayed_from_the_page(
    page: Page, api: Api, webhook_receiver: WebhookReceiver
) -> None:
    task_id, _ = await failed_task(api, webhook_receiver)  # its receiver answers 200 next time
    await page.click(f'#tasks tr[data-task-id="{task_id}"]')
    await expect(page.locator("#d-status")).to_have_text("failed")
    await expect(page.locator("#d-error")).to_contain_text("404")
    await expect(page.locator("#cancel")).to_be_hidden()

    await page.click("#retry")

    await expect(page.locator("#d-status")).to_have_text("succeeded", timeout=15_000)
    await expect(page.locator("#d-attempt")).to_have_text(re.compile(r"/ 2$"))
    await expect(page.locator("#retry")).to_be_hidden()
    await expect(page.locator("#d-result-box")).to_be_visible()


MARKUP = '<img src="/x" onerror="window.injected = true"><b id="injected">bold</b>'
FAKE_ID = "00000000-0000-4000-8000-00000000beef"


def _fake_task() -> dict[str, Any]:
    """A running task whose every free text is markup, as a hostile payload could make it."""
    at = "2026-11-30T08:00:00Z"
    return {"task_id": FAKE_ID, "task_type": MARKUP, "status": "running", "attempt": 1,
            "run": 1, "source": "http", "created_at": at, "updated_at": at, "started_at": at,
            "finished_at": None, "next_attempt_at": None, "result": None,
            "error": {"type": "Boom", "message": MARKUP},
            "progress": {"fraction": 0.4, "message": MARKUP, "at": at},
            "history": [{"status": "running", "attempt": 1, "run": 1, "at": at,
                         "error": {"type": "Boom", "message": MARKUP}}],
            "labels": ["customer=42"]}


async def test_task_data_is_shown_as_text_never_as_markup(page: Page) -> None:
    # The gateway's answers are replaced in the browser: no handler returns such text on demand.
    async def answer(route: Route) -> None:
        whole = urlparse(route.request.url).path == "/tasks"
        await route.fulfill(json={"items": [_fake_task()], "next": None} if whole
                            else _fake_task())

    await page.route(lambda url: urlparse(url).path.startswith("/tasks"), answer)
    await page.click(f'#tasks tr[data-task-id="{FAKE_ID}"]')

    await expect(page.locator("#d-error")).to_have_text(f"Boom: {MARKUP}")
    await expect(page.locator("#d-type")).to_have_text(MARKUP)
    await expect(page.locator("#d-progress-text")).to_contain_text(MARKUP)
    await expect(page.locator("#d-progress")).to_have_js_property("value", 0.4)
    await expect(page.locator("#cancel")).to_be_visible()
    assert await page.locator("#injected, #app img").count() == 0
    assert await page.evaluate("window.injected") is None
