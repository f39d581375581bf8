"""The API docs work with no internet: every asset comes from the app, the CSP holds."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Route, expect

from tests.support.server import ServerProcess
from tests.web.conftest import PHONE, new_page

pytestmark = pytest.mark.e2e

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


async def _cut_network(context: BrowserContext) -> list[str]:
    """Abort every request to a host that is not this machine; return their URLs."""
    refused: list[str] = []

    async def handle(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            refused.append(url)
            await route.abort("internetdisconnected")

    await context.route("**/*", handle)
    return refused


async def test_swagger_ui_renders_every_route_offline_without_csp_errors(
    server: ServerProcess, browser: Browser
) -> None:
    context, watched = await new_page(browser)
    refused = await _cut_network(context)
    page = watched.page
    await page.goto(f"{server.base_url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("townsquare")
    # One block per operation, each visible: the spec was loaded and rendered.
    operations = page.locator(".opblock-summary-path")
    await expect(operations.filter(has_text="/rooms/{name}/messages").first).to_be_visible()
    assert await operations.count() >= 20
    # Expanding an operation works (the UI's scripts run, not only its markup).
    path = page.locator(".opblock-summary-path", has_text="/users")
    signup = page.locator(".opblock-post", has=path)
    await signup.locator(".opblock-summary").first.click()
    await expect(signup.locator(".opblock-body").first).to_be_visible()
    # The example body is syntax-highlighted, and "Try it out" makes it editable.
    await expect(signup.locator(".highlight-code").first).to_be_visible()
    await signup.locator("button.try-out__btn").first.click()
    await expect(signup.locator("textarea.body-param__text")).to_be_visible()
    # The schemas section lists the models, and one opens on a click.
    title = page.locator(".json-schema-2020-12__title", has_text="UserCreate")
    model = page.locator("section.models article", has=title)
    await model.locator(".json-schema-2020-12-accordion").first.click()
    await expect(model.get_by_text("password").first).to_be_visible()
    await expect(page.locator(".auth-wrapper .authorize")).to_be_visible()
    await context.close()
    assert not refused, f"the page reached for other hosts: {refused}"
    assert not watched.errors, watched.errors


async def test_asyncapi_page_lists_every_frame_offline_without_csp_errors(
    server: ServerProcess, browser: Browser
) -> None:
    context, watched = await new_page(browser, viewport=PHONE)
    refused = await _cut_network(context)
    page = watched.page
    await page.goto(f"{server.base_url}/docs/asyncapi")
    await expect(page.locator("h1")).to_contain_text("townsquare WebSocket protocol")
    for frame in ("auth", "join", "send", "joined", "left", "message", "presence", "bye"):
        await expect(page.locator("article h3 code", has_text=frame).first).to_be_visible()
    joined = page.locator("article[id='server.joined']")
    await expect(joined.locator("td code", has_text="recovered")).to_be_visible()
    # Styled by its own stylesheet (no inline style): the tables have their borders.
    border = await joined.locator("td").first.evaluate(
        "cell => getComputedStyle(cell).borderBottomStyle"
    )
    assert border == "solid"
    # A phone does not scroll sideways.
    widths = await page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], widths
    await context.close()
    assert not refused, f"the page reached for other hosts: {refused}"
    assert not watched.errors, watched.errors
