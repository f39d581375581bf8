"""The admin page: live figures of the deployment, and user management."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.support.server import ServerProcess, run_server
from tests.web.conftest import (
    PHONE,
    api_user,
    create_room,
    log_in,
    make_admin,
    new_page,
    no_sideways_scroll,
    send,
    server_env,
    sign_up,
)

pytestmark = pytest.mark.e2e


# This page counts everything on its server: it gets a server of its own.
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return server_env(tmp_path_factory.mktemp("admin"))


@pytest.fixture(scope="module")
def server(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with run_server(env, tmp_path_factory.mktemp("admin-log") / "server.log") as process:
        yield process


def _figure(page: Page, key: str) -> Locator:
    return page.locator(f"#figures [data-figure='{key}'] dd")


def _user_row(page: Page, name: str) -> Locator:
    return page.locator("#users tbody tr", has_text=name)


async def test_admin_sees_live_figures_and_disables_and_promotes_users(
    server: ServerProcess, env: dict[str, str], browser: Browser, screenshots: Path
) -> None:
    make_admin(env, "Ada Admin", "ada@example.com")
    admin_context, admin = await new_page(browser)
    carl_context, carl = await new_page(browser)
    dora_context, dora = await new_page(browser)
    await sign_up(carl.page, server.base_url, "Carl", "carl@example.com")
    await sign_up(dora.page, server.base_url, "Dora", "dora@example.com")
    await create_room(carl.page, "general", topic="Everything else")
    await send(carl.page, "hello everyone")

    # A member has no admin link, and the admin page tells them it is not theirs.
    await expect(dora.page.get_by_role("link", name="Admin")).to_be_hidden()
    await dora.page.goto(f"{server.base_url}/admin")
    await expect(dora.page.get_by_role("heading", name="Admins only")).to_be_visible()
    await expect(dora.page.locator("#figures")).to_be_hidden()
    await dora.page.goto(server.base_url)

    page = admin.page
    await log_in(page, server.base_url, "ada@example.com")
    await page.get_by_role("link", name="Admin").click()
    await expect(page).to_have_url(f"{server.base_url}/admin")
    await expect(page.locator("#chat")).to_be_hidden()
    await expect(_figure(page, "instances")).to_have_text("1")
    await expect(_figure(page, "broker")).to_have_text("Healthy")
    await expect(page.locator("[data-figure='broker'] .note")).to_have_text(
        "In memory (one process)"
    )
    await expect(_figure(page, "rooms")).to_have_text("1")
    await expect(_figure(page, "users")).to_have_text("3")
    # Three pages are connected (Carl, Dora and the admin herself).
    await expect(_figure(page, "sockets")).to_have_text("3", timeout=10_000)
    await expect(page.locator("#instances tbody tr")).to_have_count(1)

    # Messages flowing show as a rate, live.
    poster = await api_user(server.base_url, "Poster", "poster@example.com")
    async with httpx.AsyncClient(base_url=server.base_url, headers=poster.headers) as http:
        for number in range(30):
            await http.post("/rooms/general/messages", json={"body": f"burst {number}"})
    await expect(_figure(page, "rate")).not_to_have_text("0.0", timeout=10_000)
    await expect(_figure(page, "messages")).to_have_text("31")
    await page.screenshot(path=screenshots / "admin.png", full_page=True)

    # Disabling Carl signs him out at once, wherever he is.
    row = _user_row(page, "Carl")
    await row.get_by_role("button", name="Disable").click()
    confirm = page.locator("#confirm-dialog")
    await expect(confirm).to_be_visible()
    await confirm.get_by_role("button", name="Disable").click()
    await expect(row.locator("td").nth(3)).to_have_text("Disabled")
    await expect(carl.page.locator("#login-form")).to_be_visible(timeout=10_000)
    await expect(carl.page.locator("#chat")).to_be_hidden()
    await expect(carl.page.get_by_text("hello everyone")).to_have_count(0)

    # Promoting Dora gives her the admin page on her next visit.
    await _user_row(page, "Dora").get_by_role("button", name="Make admin").click()
    await expect(_user_row(page, "Dora").locator("td").nth(2)).to_have_text("Admin")
    await dora.page.reload()
    await expect(dora.page.get_by_role("link", name="Admin")).to_be_visible()
    # The admin's own row cannot lock her out.
    await expect(_user_row(page, "Ada Admin").get_by_role("button")).to_have_count(0)

    # On a phone the admin page fits the screen.
    await page.set_viewport_size(PHONE)
    await no_sideways_scroll(page)

    for context in (admin_context, carl_context, dora_context):
        await context.close()
    assert not admin.errors, admin.errors
    assert not dora.errors, dora.errors
