"""The session: kept across reloads and tabs, its refresh token out of scripts' reach,
never refreshed twice at once, and ended in every tab by one logout."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from playwright.async_api import Browser, Page, Request, expect

from tests.support.server import ServerProcess
from tests.web.conftest import log_out, new_page, sign_up, watch

pytestmark = pytest.mark.e2e


async def _signed_in(page: Page, name: str) -> None:
    await expect(page.locator("#whoami")).to_have_text(name)
    await expect(page.locator("#login-form")).to_be_hidden()
    await expect(page.locator("#status")).to_have_text("Connected")


async def test_session_survives_reloads_and_new_tabs_with_one_refresh_in_flight(
    server: ServerProcess, browser: Browser
) -> None:
    context, first = await new_page(browser)
    await sign_up(first.page, server.base_url, "Tess", "tess@example.com")

    # The refresh token is a cookie no script can read, sent only to /auth.
    cookies = await context.cookies()
    refresh = next(cookie for cookie in cookies if cookie["name"] == "townsquare_refresh")
    assert refresh["httpOnly"] is True
    assert refresh["sameSite"] == "Strict"
    assert refresh["path"] == "/auth"
    assert "townsquare_refresh" not in await first.page.evaluate("document.cookie")
    stored = await first.page.evaluate(
        "JSON.stringify([Object.values(localStorage), Object.values(sessionStorage)])"
    )
    assert refresh["value"] not in stored

    await first.page.reload()
    await _signed_in(first.page, "Tess")

    # Four more tabs open at once; each needs an access token at start. The server
    # ends the whole login if one refresh token is presented twice, so the tabs must
    # take turns: no two refresh requests may overlap.
    spans: dict[Request, list[float]] = {}

    def started(request: Request) -> None:
        if request.url.endswith("/auth/refresh"):
            spans[request] = [time.monotonic(), float("inf")]

    def ended(request: Request) -> None:
        if request in spans:
            spans[request][1] = time.monotonic()

    context.on("request", started)
    context.on("requestfinished", ended)
    context.on("requestfailed", ended)
    tabs = [watch(await context.new_page()) for _ in range(4)]
    await asyncio.gather(*(tab.page.goto(server.base_url) for tab in tabs))
    for tab in [first, *tabs]:
        await _signed_in(tab.page, "Tess")
    intervals = sorted(spans.values())
    assert intervals, "the new tabs did not refresh at all"
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, f"two refreshes overlapped: {intervals}"

    # Still one valid login: a reload (another refresh) works.
    await tabs[0].page.reload()
    await _signed_in(tabs[0].page, "Tess")

    # One logout ends the session in every tab, leaving nothing of it on screen.
    await log_out(tabs[1].page)
    for tab in [first, *tabs]:
        await expect(tab.page.locator("#login-form")).to_be_visible()
        await expect(tab.page.locator("#chat")).to_be_hidden()
        await expect(tab.page.locator("#whoami")).to_be_hidden()
        await expect(tab.page.locator("#whoami")).to_have_text("")
    await first.page.reload()
    await expect(first.page.locator("#login-form")).to_be_visible()
    await context.close()
    for tab in [first, *tabs]:
        assert not tab.errors, tab.errors


async def test_signing_in_in_one_tab_signs_in_the_others(
    server: ServerProcess, browser: Browser
) -> None:
    context, first = await new_page(browser)
    second = watch(await context.new_page())
    await second.page.goto(server.base_url)
    await expect(second.page.locator("#login-form")).to_be_visible()
    await sign_up(first.page, server.base_url, "Uma", "uma@example.com")
    await _signed_in(second.page, "Uma")
    await context.close()
    assert not first.errors, first.errors
    assert not second.errors, second.errors
