"""Scroll-back: a room of 500 messages, paged by before_seq as the person scrolls up."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, Locator, expect

from tests.support.server import ServerProcess
from tests.web.conftest import api_user, log_in, new_page, room_button

pytestmark = pytest.mark.e2e

COUNT = 500


async def _on_screen(locator: Locator) -> bool:
    """Inside the visible part of the message list (not scrolled out of it)."""
    return bool(
        await locator.evaluate(
            """element => {
                const box = element.getBoundingClientRect();
                const view = document.getElementById("scroller").getBoundingClientRect();
                return box.top >= view.top && box.bottom <= view.bottom;
            }"""
        )
    )


async def test_scrolling_up_reaches_message_1_in_order_each_once(
    server: ServerProcess, browser: Browser
) -> None:
    author = api_user(server.base_url, "Archivist", "archivist@example.com")
    with httpx.Client(base_url=server.base_url, headers=author.headers, timeout=10) as http:
        assert http.post("/rooms", json={"name": "archive"}).status_code == 201
        for number in range(1, COUNT + 1):
            posted = http.post("/rooms/archive/messages", json={"body": f"Message {number}"})
            assert posted.status_code == 201
            assert posted.json()["seq"] == number

    context, watched = await new_page(browser)
    page = watched.page
    await log_in(page, server.base_url, "archivist@example.com")
    await room_button(page, "archive").click()
    messages = page.locator(".message:not(.pending)")
    await expect(messages.last.locator(".body")).to_have_text(f"Message {COUNT}")
    assert await messages.count() < COUNT  # only the latest page at first

    # Scroll up with the wheel, as a person would, until the start of the room shows.
    beginning = page.get_by_text("This is the beginning of #archive.")
    await page.locator("#scroller").hover()
    for _ in range(100):
        if await beginning.is_visible() and await _on_screen(beginning):
            break
        await page.mouse.wheel(0, -4000)
        await page.wait_for_timeout(50)
    await expect(beginning).to_be_in_viewport()
    await expect(messages.first.locator(".body")).to_have_text("Message 1")
    await expect(messages.first).to_be_in_viewport()

    seqs = await messages.evaluate_all("items => items.map(item => Number(item.dataset.seq))")
    bodies = await messages.locator(".body").all_inner_texts()
    assert seqs == list(range(1, COUNT + 1))
    assert bodies == [f"Message {number}" for number in range(1, COUNT + 1)]
    await context.close()
    assert not watched.errors, watched.errors
