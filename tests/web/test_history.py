"""Scroll-back: a room of 500 messages, paged by before_seq as the person scrolls up."""

from __future__ import annotations

import asyncio

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
    author = await api_user(server.base_url, "Archivist", "archivist@example.com")
    async with httpx.AsyncClient(base_url=server.base_url, headers=author.headers) as http:
        assert (await http.post("/rooms", json={"name": "archive"})).status_code == 201
        # Posted a few at a time (the order they get is the server's: read it back).
        gate = asyncio.Semaphore(6)

        async def post(number: int) -> None:
            async with gate:
                body = {"body": f"Message {number}"}
                posted = await http.post("/rooms/archive/messages", json=body)
                assert posted.status_code == 201, posted.text

        await asyncio.gather(*(post(number) for number in range(1, COUNT + 1)))
        stored: list[str] = []
        while len(stored) < COUNT:
            page_url = f"/rooms/archive/messages?after_seq={len(stored)}&limit=200"
            stored += [message["body"] for message in (await http.get(page_url)).json()]
    assert len(set(stored)) == COUNT

    context, watched = await new_page(browser)
    page = watched.page
    await log_in(page, server.base_url, "archivist@example.com")
    await room_button(page, "archive").click()
    messages = page.locator(".message:not(.pending)")
    await expect(messages.last.locator(".body")).to_have_text(stored[-1])
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
    await expect(messages.first.locator(".body")).to_have_text(stored[0])
    await expect(messages.first).to_be_in_viewport()

    seqs = await messages.evaluate_all("items => items.map(item => Number(item.dataset.seq))")
    bodies = await messages.locator(".body").all_inner_texts()
    assert seqs == list(range(1, COUNT + 1))
    assert bodies == stored
    await context.close()
    assert not watched.errors, watched.errors
