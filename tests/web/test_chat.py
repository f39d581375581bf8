"""Two people, two browsers: sign up, a private room each, add each other, talk."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.server import ServerProcess
from tests.web.conftest import create_room, new_page, room_button, send, sign_up

pytestmark = pytest.mark.e2e

SECRET = "the launch is on Friday"


async def _add_member(page: Page, name: str) -> None:
    await page.locator("#online").click()
    dialog = page.locator("#members-dialog")
    await dialog.get_by_label("Add people").fill(name[:2])
    await dialog.get_by_role("button", name=f"Add {name}").click()
    await expect(dialog.locator(".member-name", has_text=name)).to_be_visible()
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()


async def _signed_in_views(page: Page) -> None:
    # Once signed in, nothing of the sign-in page is on screen (nor a typed password).
    await expect(page.locator("#login-form")).to_be_hidden()
    await expect(page.locator("#signup-form")).to_be_hidden()
    passwords = page.locator("input[type=password]")  # log in, sign up, reset (twice)
    await expect(passwords).to_have_count(4)  # in the DOM, but
    for field in await passwords.all():
        await expect(field).to_be_hidden()
        assert await field.input_value() == ""
    await expect(page.locator("#chat")).to_be_visible()


async def test_two_people_add_each_other_to_private_rooms_and_chat(
    server: ServerProcess, browser: Browser, screenshots: Path
) -> None:
    ann_context, ann_watch = await new_page(browser)
    bob_context, bob_watch = await new_page(browser)
    ann, bob = ann_watch.page, bob_watch.page

    # Before signing in only the forms show: no empty chat, no status.
    await ann.goto(server.base_url)
    await expect(ann.locator("#login-form")).to_be_visible()
    await expect(ann.locator("#chat")).to_be_hidden()
    await expect(ann.locator("#status")).to_be_hidden()

    await sign_up(ann, server.base_url, "Ann", "ann@example.com")
    await _signed_in_views(ann)
    await sign_up(bob, server.base_url, "Bob", "bob@example.com")
    await _signed_in_views(bob)

    # Each makes a private room and adds the other.
    await create_room(ann, "design", topic="Mock-ups and reviews", private=True)
    await expect(ann.locator("#room-title")).to_have_text("design")
    await expect(ann.get_by_role("img", name="private room")).to_be_visible()
    await expect(ann.locator("#room-topic")).to_have_text("Mock-ups and reviews")
    await create_room(bob, "bobs-corner", private=True)
    await expect(room_button(ann, "bobs-corner")).to_have_count(0)  # private: unseen
    await _add_member(ann, "Bob")
    await _add_member(bob, "Ann")

    # Ann writes while Bob looks at his own room: a badge counts what he has not read.
    await send(ann, "first draft is up")
    await send(ann, SECRET)
    await expect(ann.locator(".message:not(.pending) .body")).to_have_text(
        ["first draft is up", SECRET]
    )
    await bob.bring_to_front()  # a person switching to the window: the list refreshes
    badge = room_button(bob, "design").locator(".badge")
    await expect(badge).to_have_text("2", timeout=15_000)
    await expect(badge).to_be_visible()
    # And Ann sees Bob's room appear in her list, with nothing unread.
    await ann.bring_to_front()
    await expect(room_button(ann, "bobs-corner")).to_be_visible(timeout=15_000)
    await expect(room_button(ann, "bobs-corner").locator(".badge")).to_have_count(0)

    # Bob opens the room: the history in order, the badge gone, both online.
    await room_button(bob, "design").click()
    await expect(bob.locator(".message .body")).to_have_text(["first draft is up", SECRET])
    await expect(badge).to_have_count(0)
    await expect(bob.locator("#online")).to_have_text("2 online")
    await expect(ann.locator("#online")).to_have_text("2 online")
    await expect(bob.locator(".message .author").first).to_have_text("Ann")

    # Typing shows on the other side, then the message arrives live.
    await bob.get_by_label("Message", exact=True).press_sequentially("looks good")
    await expect(ann.locator("#typing")).to_have_text("Bob is typing…")
    await bob.get_by_label("Message", exact=True).press("Enter")
    await expect(ann.locator(".message .body").last).to_have_text("looks good")
    await expect(ann.locator("#typing")).to_have_text("")  # the message replaced the hint
    await send(ann, "great, I'll book the review for Thursday")
    await expect(bob.locator(".message .body").last).to_have_text(
        "great, I'll book the review for Thursday"
    )
    await ann.screenshot(path=screenshots / "chat.png")
    # Markup is shown as text, never turned into elements.
    await send(bob, "<img src=x onerror=alert(1)>")
    await expect(ann.locator(".message .body").last).to_have_text("<img src=x onerror=alert(1)>")
    await expect(ann.locator("#messages img")).to_have_count(0)
    await expect(ann.locator(".message.pending")).to_have_count(0)
    seqs = await ann.locator(".message").evaluate_all("items => items.map(i => +i.dataset.seq)")
    assert seqs == [1, 2, 3, 4, 5]
    await expect(ann.locator("#messages .day")).to_have_text(["Today"])
    await expect(ann.locator(".message time").first).to_be_visible()

    # The member list shows who owns the room and who is online.
    await bob.locator("#online").click()
    members = bob.locator("#members-dialog")
    await expect(members.locator(".member", has_text="Ann")).to_contain_text("owner")
    await expect(members.locator(".member", has_text="Bob")).to_contain_text("online")
    await members.get_by_role("button", name="Close").click()

    # Bob logs out: the sign-in form, and nothing of Bob's session on screen.
    await bob.locator("#account-button").click()
    await bob.locator("#account-menu").get_by_role("button", name="Log out").click()
    await expect(bob.locator("#login-form")).to_be_visible()
    await expect(bob.locator("#chat")).to_be_hidden()
    await expect(bob.locator("#account")).to_be_hidden()
    await expect(bob.locator("#rooms li")).to_have_count(0)
    await expect(bob.locator("#messages li")).to_have_count(0)
    await expect(bob.get_by_text(SECRET)).to_have_count(0)
    await expect(bob.get_by_text("design")).to_have_count(0)
    assert "Bob" not in await bob.locator("body").inner_text()
    # Ann sees Bob go offline.
    await expect(ann.locator("#online")).to_have_text("1 online")
    # And a reload does not bring it back (the login ended on the server too).
    await bob.reload()
    await expect(bob.locator("#login-form")).to_be_visible()
    await expect(bob.locator("#whoami")).to_be_hidden()

    await ann_context.close()
    await bob_context.close()
    assert not ann_watch.errors, ann_watch.errors
    assert not bob_watch.errors, bob_watch.errors


async def test_wrong_password_shows_the_servers_message(
    server: ServerProcess, browser: Browser
) -> None:
    context, watched = await new_page(browser)
    page = watched.page
    await page.goto(server.base_url)
    form = page.locator("#login-form")
    await form.get_by_label("Email").fill("nobody@example.com")
    await form.get_by_label("Password").fill("wrong password")
    await form.get_by_role("button", name="Log in").click()
    await expect(page.locator("#signin-error")).to_have_text("Incorrect email or password")
    await expect(page.locator("#chat")).to_be_hidden()
    await context.close()
