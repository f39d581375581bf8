"""What a person on a phone, on a keyboard, or with weaker eyes gets: no page wider
than a 360 px screen, every action reachable by keyboard, and text that meets WCAG AA
contrast in the light and the dark scheme."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support.server import ServerProcess
from tests.web.conftest import (
    PHONE,
    api_user,
    create_room,
    log_in,
    log_out,
    make_admin,
    new_page,
    no_sideways_scroll,
    readable,
    room_button,
    send,
    sign_up,
)

pytestmark = pytest.mark.e2e

LONG_WORD = "supercalifragilistic" * 8  # one unbreakable 160-letter word


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_view_fits_360px_and_meets_contrast(
    server: ServerProcess,
    env: dict[str, str],
    browser: Browser,
    screenshots: Path,
    scheme: Literal["light", "dark"],
) -> None:
    context, watched = await new_page(browser, viewport=PHONE, color_scheme=scheme)
    page = watched.page
    email = f"phone-{scheme}@example.com"

    await page.goto(server.base_url)
    await expect(page.locator("#login-form")).to_be_visible()
    await no_sideways_scroll(page)
    await readable(page, "sign-in")
    # A refused sign-in shows its error, readable too.
    await page.locator("#login-form").get_by_label("Email").fill(email)
    await page.locator("#login-form").get_by_label("Password").fill("wrong password")
    await page.locator("#login-form").get_by_role("button", name="Log in").click()
    await expect(page.locator("#signin-error")).to_be_visible()
    await readable(page, "sign-in error")

    await sign_up(page, server.base_url, "Pat with a rather long display name", email)
    await expect(page.locator(".sidebar")).to_be_visible()
    await no_sideways_scroll(page)
    await create_room(page, f"phones-{scheme}", topic="A topic that is long enough to be cut off")
    # One pane at a time on a phone: the room replaces the list.
    await expect(page.locator(".sidebar")).to_be_hidden()
    await send(page, "Hello from a small screen")
    await send(page, "Lunch at noon? The usual place, or the new one by the river")
    await expect(page.locator(".message:not(.pending) .body").last).to_contain_text(
        "Lunch at noon?"
    )
    if scheme == "light":
        await page.screenshot(path=screenshots / "phone.png")
    await send(page, LONG_WORD)
    await expect(page.locator(".message:not(.pending) .body").last).to_have_text(LONG_WORD)
    await no_sideways_scroll(page)
    # The long word wraps inside the screen instead of running out of it (cut off).
    long_body = page.locator(".message:not(.pending) .body", has_text=LONG_WORD)
    long_box = await long_body.bounding_box()
    assert long_box is not None
    assert long_box["x"] + long_box["width"] <= PHONE["width"], long_box
    overflow = await long_body.evaluate("body => body.scrollWidth - body.clientWidth")
    assert overflow <= 0, f"the text runs {overflow} px out of its box"
    await readable(page, "room")
    send_button = page.locator("#composer").get_by_role("button", name="Send")
    box = await send_button.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= PHONE["width"], box

    await page.locator("#online").click()
    await expect(page.locator("#members-dialog")).to_be_visible()
    await no_sideways_scroll(page)
    await readable(page, "members dialog")
    await page.keyboard.press("Escape")
    await expect(page.locator("#members-dialog")).to_be_hidden()

    await page.get_by_role("button", name="Back to rooms").click()
    await expect(room_button(page, f"phones-{scheme}")).to_be_visible()
    await readable(page, "room list")

    # The admin page, as an admin, on the same phone.
    admin_email = f"admin-{scheme}@example.com"
    make_admin(env, "Phone Admin", admin_email)
    await log_out(page)
    await log_in(page, server.base_url, admin_email)
    await page.get_by_role("link", name="Admin").click()
    await expect(page.locator("#figures [data-figure='instances'] dd")).to_have_text("1")
    await expect(page.locator("#users tbody tr").first).to_be_visible()
    await no_sideways_scroll(page)
    await readable(page, "admin")
    await context.close()
    refused = "the server responded with a status of 401"  # the wrong password, above
    assert [error for error in watched.errors if refused not in error] == []


async def test_keyboard_alone_signs_in_opens_a_room_and_sends(
    server: ServerProcess, browser: Browser
) -> None:
    context, watched = await new_page(browser)
    page = watched.page
    await page.goto(server.base_url)
    await expect(page.locator("#login-form")).to_be_visible()
    # Tab to the sign-up form's fields, type, submit with Enter.
    name = page.locator("#signup-form").get_by_label("Name")
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await name.evaluate("element => element === document.activeElement"):
            break
    await page.keyboard.type("Kim")
    await page.keyboard.press("Tab")
    await page.keyboard.type("kim@example.com")
    await page.keyboard.press("Tab")
    await page.keyboard.type("long enough password")
    await page.keyboard.press("Enter")
    await expect(page.locator("#whoami")).to_have_text("Kim")

    # A new room through its dialog, by keyboard; Escape would close it.
    new_room = page.get_by_role("button", name="New room")
    await new_room.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("#room-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Name")).to_be_focused()
    await page.keyboard.type("keys")
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_label("Message", exact=True)).to_be_focused()
    await page.keyboard.type("typed, not clicked")
    await page.keyboard.press("Enter")
    await expect(page.locator(".message:not(.pending) .body")).to_have_text(["typed, not clicked"])
    # The focused control is visibly marked, and stays focused while the list updates
    # (a message arriving redraws the room's button).
    await room_button(page, "keys").focus()
    outline = await room_button(page, "keys").evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline != "none"
    other = await api_user(server.base_url, "Lee", "lee@example.com")
    async with httpx.AsyncClient(base_url=server.base_url, headers=other.headers) as http:
        body = {"body": "a message while the list has focus"}
        assert (await http.post("/rooms/keys/messages", json=body)).status_code == 201
    await expect(page.locator(".message:not(.pending) .body").last).to_have_text(
        "a message while the list has focus"
    )
    await expect(room_button(page, "keys")).to_be_focused()
    await context.close()
    assert not watched.errors, watched.errors
