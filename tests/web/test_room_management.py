"""An owner manages a room from the page: topic, private, members, delete; a removed
member is told at once (the server's `left` frame) and loses the room."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.support.server import ServerProcess
from tests.web.conftest import create_room, new_page, room_button, send, sign_up

pytestmark = pytest.mark.e2e


async def test_owner_edits_makes_private_removes_a_member_and_deletes_the_room(
    server: ServerProcess, browser: Browser
) -> None:
    owner_context, owner_watch = await new_page(browser)
    member_context, member_watch = await new_page(browser)
    olga, max_ = owner_watch.page, member_watch.page
    await sign_up(olga, server.base_url, "Olga", "olga@example.com")
    await sign_up(max_, server.base_url, "Max", "max@example.com")
    await create_room(olga, "plans", topic="Q1")

    # Olga adds Max; he opens the room (public so far) and reads.
    await olga.locator("#online").click()
    members = olga.locator("#members-dialog")
    await members.get_by_label("Add people").fill("Ma")
    await members.get_by_role("button", name="Add Max").click()
    await expect(members.locator(".member", has_text="Max")).to_be_visible()
    await members.get_by_role("button", name="Close").click()
    await send(olga, "roadmap draft")
    await max_.bring_to_front()
    await room_button(max_, "plans").click(timeout=15_000)
    await expect(max_.locator(".message .body")).to_have_text(["roadmap draft"])
    # Only the owner (or an admin) gets the room's settings.
    await expect(max_.get_by_role("button", name="Settings")).to_be_hidden()

    # New topic, and private: the header says so at once.
    await olga.get_by_role("button", name="Settings").click()
    settings = olga.locator("#settings-dialog")
    await settings.get_by_label("Topic").fill("Q2 roadmap")
    await settings.get_by_label("Private").check()
    await settings.get_by_role("button", name="Save").click()
    await expect(settings).to_be_hidden()
    await expect(olga.locator("#room-topic")).to_have_text("Q2 roadmap")
    await expect(olga.get_by_role("img", name="private room")).to_be_visible()
    # Max, a member, keeps the room and sees the new topic on his next look.
    await max_.bring_to_front()
    await expect(max_.locator("#room-topic")).to_have_text("Q2 roadmap", timeout=15_000)

    # Olga removes Max: he is told at once, and the private room leaves his list.
    await olga.bring_to_front()
    await olga.locator("#online").click()
    row = members.locator(".member", has_text="Max")
    await row.get_by_role("button", name="Remove").click()
    await olga.locator("#confirm-dialog").get_by_role("button", name="Remove").click()
    await expect(members.locator(".member", has_text="Max")).to_have_count(0)
    await members.get_by_role("button", name="Close").click()
    await expect(max_.locator("#toast")).to_have_text("You were removed from this room.")
    await expect(max_.locator("#toast")).to_be_visible()
    await expect(room_button(max_, "plans")).to_have_count(0)
    await expect(max_.get_by_text("roadmap draft")).to_have_count(0)

    # Olga deletes the room; it is gone from her list.
    await olga.get_by_role("button", name="Settings").click()
    await olga.locator("#delete-room").click()
    confirm = olga.locator("#confirm-dialog")
    await expect(confirm).to_contain_text("Delete plans?")
    await confirm.get_by_role("button", name="Delete room").click()
    await expect(room_button(olga, "plans")).to_have_count(0)
    await expect(olga.locator("#room")).to_be_hidden()

    await owner_context.close()
    await member_context.close()
    assert not owner_watch.errors, owner_watch.errors
    assert not member_watch.errors, member_watch.errors
