"""Browser tests: a real server process, Debian's Chromium driven by Playwright, and
helpers that act as a person would (fill the forms, click, read what is visible)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from tests.conftest import TEST_SECRET
from tests.support.server import ServerProcess, run_server

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
PASSWORD = "long enough password"
PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
# `make screenshots` points this at docs/screenshots; otherwise they go to a temp dir,
# so every run still takes them.
SCREENSHOTS_ENV = "SCREENSHOTS_DIR"


def server_env(folder: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'web.db'}",
        "SECRET_KEY": TEST_SECRET,
        "ENV": "test",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        **extra,
    }


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the shared server (its database, for the CLI)."""
    return server_env(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="session")
def server(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for the browser tests (each uses users and rooms of its own); a test
    that counts everything on its server (the admin page) starts its own."""
    log = tmp_path_factory.mktemp("log") / "server.log"
    with run_server(env, log) as process:
        yield process


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once per session, before any I/O
        message = f"Chromium not found at {CHROMIUM}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it", pytrace=False)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Watched:
    """A page and every script error and console error it produced."""

    page: Page
    errors: list[str] = field(default_factory=list)


def watch(page: Page) -> Watched:
    watched = Watched(page)
    page.on("pageerror", lambda error: watched.errors.append(f"pageerror: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text}")

    page.on("console", on_console)
    return watched


async def new_page(
    browser: Browser, *, viewport: ViewportSize | None = None, **options: Any
) -> tuple[BrowserContext, Watched]:
    context = await browser.new_context(viewport=viewport or DESKTOP, **options)
    return context, watch(await context.new_page())


@dataclass
class ApiUser:
    id: int
    name: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def api_user(base_url: str, name: str, email: str, *, password: str = PASSWORD) -> ApiUser:
    """Sign up (if new) and log in over the JSON API, as another client would."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        account = {"name": name, "email": email, "password": password}
        created = await http.post("/users", json=account)
        assert created.status_code in (201, 409), created.text
        token = await http.post("/auth/token", data={"username": email, "password": password})
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        me = await http.get("/me", headers={"Authorization": f"Bearer {access}"})
        return ApiUser(me.json()["id"], name, email, access)


def make_admin(env: dict[str, str], name: str, email: str) -> None:
    """`townsquare create-admin` against the server's database, as an operator would."""
    result = subprocess.run(
        [sys.executable, "-m", "townsquare.cli", "create-admin", "--email", email, "--name", name],
        env={**os.environ, **env, "TOWNSQUARE_ADMIN_PASSWORD": PASSWORD},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


async def sign_up(page: Page, base_url: str, name: str, email: str) -> None:
    """Fill the sign-up form as a person would; return once the chat is on screen."""
    await page.goto(base_url)
    form = page.locator("#signup-form")
    await form.get_by_label("Name").fill(name)
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Sign up").click()
    await expect(page.locator("#whoami")).to_have_text(name)
    await expect(page.locator("#status")).to_have_text("Connected")


async def log_in(page: Page, base_url: str, email: str) -> None:
    await page.goto(base_url)
    form = page.locator("#login-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Log in").click()
    await expect(page.locator("#chat")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("Connected")


async def log_out(page: Page) -> None:
    """Log out through the account menu, as a person would."""
    await page.locator("#account-button").click()
    await page.locator("#account-menu").get_by_role("button", name="Log out").click()
    await expect(page.locator("#login-form")).to_be_visible()


async def create_room(page: Page, name: str, *, topic: str = "", private: bool = False) -> None:
    await page.get_by_role("button", name="New room").click()
    dialog = page.locator("#room-dialog")
    await dialog.get_by_label("Name").fill(name)
    if topic:
        await dialog.get_by_label("Topic").fill(topic)
    if private:
        await dialog.get_by_label("Private").check()
    await dialog.get_by_role("button", name="Create").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#room-title")).to_contain_text(name)


async def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


# Every visible element with text of its own whose contrast is under WCAG AA.
LOW_CONTRAST_JS = (Path(__file__).parent / "contrast.js").read_text()


async def readable(page: Page, where: str) -> None:
    failures = await page.evaluate(LOW_CONTRAST_JS)
    assert not failures, f"{where}: text under WCAG AA contrast: {failures}"


def room_button(page: Page, name: str) -> Locator:
    return page.locator(f"#rooms button[data-room='{name}']")


async def no_sideways_scroll(page: Page) -> None:
    """Nothing on the page is wider than the window (no horizontal scroll bar)."""
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"
    )
    assert max(widths[:2]) <= widths[2], f"page {widths[:2]} wider than window {widths[2]}"
