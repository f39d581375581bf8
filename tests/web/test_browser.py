"""The web client in a real Chromium against a real server."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import TEST_SECRET
from tests.support.server import ServerProcess, run_server

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Without these, Chromium reaches for Google's hosts at start and waits on them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("web")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'web.db'}",
        "SECRET_KEY": TEST_SECRET,
        "ENV": "test",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
    }
    with run_server(env, folder / "server.log") as process:
        yield process


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once per module, before any I/O
        message = f"Chromium not found at {CHROMIUM}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it", pytrace=False)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def _sign_up(page: Page, base_url: str, name: str, email: str) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(base_url)
    form = page.locator("#signup-form")
    await form.locator("[name=name]").fill(name)
    await form.locator("[name=email]").fill(email)
    await form.locator("[name=password]").fill("long enough password")
    await form.locator("button").click()
    await expect(page.locator("#whoami")).to_have_text(name)
    await expect(page.locator("#status")).to_have_text("online")
    assert not errors, errors


async def test_two_people_talk_in_a_room_through_the_page(
    server: ServerProcess, browser: Browser
) -> None:
    ann = await (await browser.new_context()).new_page()
    bob = await (await browser.new_context()).new_page()
    await _sign_up(ann, server.base_url, "Ann", "ann@example.com")
    await _sign_up(bob, server.base_url, "Bob", "bob@example.com")

    await ann.locator("#room-form [name=name]").fill("lobby")
    await ann.locator("#room-form button").click()
    await expect(ann.locator("#room-title")).to_have_text("# lobby")

    await ann.locator("#send-form [name=body]").fill("hello from Ann")
    await ann.locator("#send-form button").click()
    await expect(ann.locator("#messages li")).to_have_count(1)

    # Bob finds the room, sees the history, then gets Ann's next message live.
    await bob.reload()
    await bob.locator("#rooms button", has_text="lobby").click()
    await expect(bob.locator("#messages li .body")).to_have_text(["hello from Ann"])
    await ann.locator("#send-form [name=body]").fill("<img src=x onerror=alert(1)>")
    await ann.locator("#send-form button").click()
    await expect(bob.locator("#messages li")).to_have_count(2)
    # Text stays text: no element was made from the message.
    await expect(bob.locator("#messages img")).to_have_count(0)
    await expect(bob.locator("#messages li .body").nth(1)).to_have_text(
        "<img src=x onerror=alert(1)>"
    )

    await bob.locator("#send-form [name=body]").fill("hi Ann")
    await bob.locator("#send-form button").click()
    await expect(ann.locator("#messages li .body").last).to_have_text("hi Ann")
    seqs = await ann.locator("#messages li").evaluate_all(
        "items => items.map(item => Number(item.dataset.seq))"
    )
    assert seqs == [1, 2, 3]


async def test_wrong_password_shows_the_servers_message(
    server: ServerProcess, browser: Browser
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(server.base_url)
    form = page.locator("#login-form")
    await form.locator("[name=email]").fill("nobody@example.com")
    await form.locator("[name=password]").fill("wrong password")
    await form.locator("button").click()
    await expect(page.locator("#signin-error")).to_have_text("Incorrect email or password")
