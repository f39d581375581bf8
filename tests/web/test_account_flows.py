"""The account flows in the browser, with real mail: a server process that sends through
a real SMTP server (aiosmtpd) run by the test, and Chromium following the links in the
received mails. Verify an address, reset a forgotten password, see and end sessions;
what a person sees at each step, on a phone too, in light and dark."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.server import ServerProcess, free_port, run_server
from tests.support.smtp import MailServer, link_in, running_mail_server, token_in
from tests.web.conftest import (
    PASSWORD,
    PHONE,
    create_room,
    log_in,
    new_page,
    no_sideways_scroll,
    readable,
    send,
    server_env,
    sign_up,
)

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new password"
FIREFOX_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0"
)
SAFARI_ON_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(scope="module")
async def mail() -> AsyncIterator[MailServer]:
    async with running_mail_server() as server:
        yield server


@pytest.fixture(scope="module")
def flows(mail: MailServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for this module: mails go to `mail`, their links lead back to this
    server, unverified accounts may not join or post, and one account may ask for one
    more verification mail an hour (so the limit is met on the second click)."""
    folder = tmp_path_factory.mktemp("flows")
    port = free_port()
    env = server_env(
        folder,
        SMTP_URL=mail.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        REQUIRE_VERIFIED_EMAIL="true",
        VERIFICATION_EMAIL_LIMIT="1/hour",
    )
    with run_server(env, folder / "server.log", port=port) as process:
        yield process


async def _signed_out(page: Page, *, why: str) -> None:
    """The sign-in form, nothing of the session, and a line saying why."""
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#chat")).to_be_hidden()
    await expect(page.locator("#account")).to_be_hidden()
    await expect(page.locator("#signin-notice")).to_be_visible()
    await expect(page.locator("#signin-notice")).to_contain_text(why)


async def test_signup_mail_link_verifies_the_address_and_lets_the_account_post(
    flows: ServerProcess, mail: MailServer, browser: Browser
) -> None:
    context, watched = await new_page(browser)
    page = watched.page
    await sign_up(page, flows.base_url, "Vera", "vera@example.com")
    banner = page.locator("#verify-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Please verify your email address.")
    await expect(banner).to_contain_text("vera@example.com")

    # Unverified: a room can be created, but not joined or posted in; the room says why.
    await create_room(page, "verified-only")
    await expect(page.locator("#room-notice")).to_be_visible()
    await expect(page.locator("#room-notice")).to_contain_text(
        "Verify your email address to join this room and post in it"
    )
    await expect(page.get_by_label("Message", exact=True)).to_be_disabled()

    # A new link; asking again at once meets the limit, and says so.
    resend = banner.get_by_role("button", name="Email me a new link")
    await resend.click()
    await expect(page.locator("#resend-state")).to_have_text(
        "A new link is on its way to vera@example.com. It can take a minute to arrive."
    )
    await resend.click()
    await expect(page.locator("#resend-state")).to_contain_text(
        "You asked for several links recently. Try again in"
    )
    await expect(page.locator("#resend-state")).to_contain_text("minutes")

    # The newest mail's link, opened in this very tab (only the fragment changes).
    [_, latest] = await mail.wait_to("vera@example.com", 2)
    link = link_in(latest)
    assert link.startswith(f"{flows.base_url}/#/verify?token=")
    await page.goto(link)
    await expect(page.locator("#verify")).to_be_visible()
    await expect(page.locator("#verify-state")).to_have_text(
        "Your email address is verified. Thank you!"
    )
    await expect(banner).to_be_hidden()
    assert "token" not in page.url  # the token left the address bar and the history

    # Back in the room, still open: joined at once, and a message goes through.
    await page.get_by_role("button", name="Go to the chat").click()
    await expect(page.locator("#room-title")).to_contain_text("verified-only")
    await expect(page.locator("#room-notice")).to_be_hidden()
    await expect(page.locator("#online")).to_have_text("1 online")
    await send(page, "verified at last")
    await expect(page.locator(".message:not(.pending) .body")).to_have_text(["verified at last"])

    # The link again, here: spent, but nothing is left to do.
    await page.goto(link)
    await expect(page.locator("#verify-state")).to_have_text(
        "This link was already used: your email address is verified."
    )
    await expect(page.get_by_role("button", name="Email me a new link")).to_have_count(0)
    await page.get_by_role("button", name="Go to the chat").click()
    await expect(page.locator("#chat")).to_be_visible()

    # The used link, opened in another browser that is not signed in.
    other, other_watch = await new_page(browser)
    await other_watch.page.goto(link)
    await expect(other_watch.page.locator("#verify-state")).to_have_text(
        "This link is invalid, expired or already used. Log in to ask for a new one."
    )
    await other_watch.page.get_by_role("button", name="Log in").click()
    await expect(other_watch.page.locator("#login-form")).to_be_visible()
    await other.close()
    await context.close()
    refused = "the server responded with a status of 4"  # the limit; the spent link
    for watch_ in (watched, other_watch):
        assert [error for error in watch_.errors if refused not in error] == []


async def test_verification_link_works_signed_out_and_reaches_the_signed_in_tab(
    flows: ServerProcess, mail: MailServer, browser: Browser
) -> None:
    context, watched = await new_page(browser)
    page = watched.page
    await sign_up(page, flows.base_url, "Wes", "wes@example.com")
    await expect(page.locator("#verify-banner")).to_be_visible()
    [mail_] = await mail.wait_to("wes@example.com", 1)

    # The link opens on a phone, where nobody is signed in.
    phone, phone_watch = await new_page(browser, viewport=PHONE)
    await phone_watch.page.goto(link_in(mail_))
    await expect(phone_watch.page.locator("#verify-state")).to_have_text(
        "Your email address is verified. Thank you!"
    )
    await expect(phone_watch.page.get_by_role("button", name="Log in")).to_be_visible()
    # The computer's tab notices when it is looked at again.
    await page.evaluate("window.dispatchEvent(new Event('focus'))")
    await expect(page.locator("#verify-banner")).to_be_hidden()
    await phone.close()
    await context.close()
    assert not phone_watch.errors, phone_watch.errors
    assert not watched.errors, watched.errors


async def test_forgot_password_mail_reset_ends_every_session_and_only_the_new_password_works(
    flows: ServerProcess, mail: MailServer, browser: Browser
) -> None:
    email = "rhea@example.com"
    # Rhea is signed in on another browser.
    elsewhere, elsewhere_watch = await new_page(browser)
    await sign_up(elsewhere_watch.page, flows.base_url, "Rhea", email)
    await mail.wait_to(email, 1)  # the verification mail

    context, watched = await new_page(browser)
    page = watched.page
    await page.goto(flows.base_url)
    await page.get_by_role("button", name="Forgot password?").click()
    forgot = page.locator("#forgot")
    await expect(forgot).to_be_visible()
    await expect(page.locator("#login-form")).to_be_hidden()
    await expect(forgot.get_by_label("Email")).to_be_focused()

    # Whether or not an account uses the address, the answer reads the same.
    async def ask(address: str) -> str:
        await forgot.get_by_label("Email").fill(address)
        await forgot.get_by_role("button", name="Email me a link").click()
        done = page.locator("#forgot-done")
        await expect(done).to_be_visible()
        await expect(forgot.locator("form")).to_be_hidden()
        text = await done.inner_text()
        await forgot.get_by_role("button", name="Back to log in").click()
        await expect(page.locator("#login-form")).to_be_visible()
        await page.get_by_role("button", name="Forgot password?").click()
        return text

    unknown = await ask("nobody@example.com")
    known = await ask(email)
    assert unknown.startswith("If an account uses nobody@example.com, a link")
    assert known == unknown.replace("nobody@example.com", email)

    [_, reset_mail] = await mail.wait_to(email, 2)
    link = link_in(reset_mail)
    assert link.startswith(f"{flows.base_url}/#/reset?token=")
    # The mail's link opens a new tab.
    tab = await context.new_page()
    await tab.goto(link)
    await expect(tab.locator("#reset")).to_be_visible()
    await expect(tab.get_by_label("New password", exact=True)).to_be_focused()
    assert "token" not in tab.url
    await tab.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await tab.get_by_label("Repeat password").fill("not the same password")
    await tab.get_by_role("button", name="Set the new password").click()
    await expect(tab.locator("#reset-error")).to_have_text(
        "The two passwords differ: type the same new password twice."
    )
    await tab.get_by_label("Repeat password").fill(NEW_PASSWORD)
    await tab.get_by_role("button", name="Set the new password").click()
    await expect(tab.locator("#login-form")).to_be_visible()
    await expect(tab.locator("#signin-notice")).to_have_text(
        "Your password was changed, and every session of your account has ended. "
        "Log in with the new password."
    )

    # The other browser was signed out at once, and says why.
    await _signed_out(elsewhere_watch.page, why="Your session has ended")

    # The link worked once: opened again, it asks for a new one.
    await page.goto(link)
    await page.get_by_label("New password", exact=True).fill("yet another password")
    await page.get_by_label("Repeat password").fill("yet another password")
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.locator("#reset-error")).to_have_text(
        "This link is invalid, expired or already used. Ask for a new one."
    )
    await expect(page.locator("#reset-form")).to_be_hidden()
    await page.get_by_role("button", name="Ask for a new link").click()
    await expect(page.locator("#forgot")).to_be_visible()

    # The old password is refused; the new one works.
    login = tab.locator("#login-form")
    await login.get_by_label("Email").fill(email)
    await login.get_by_label("Password").fill(PASSWORD)
    await login.get_by_role("button", name="Log in").click()
    await expect(tab.locator("#signin-error")).to_have_text("Incorrect email or password")
    await login.get_by_label("Password").fill(NEW_PASSWORD)
    await login.get_by_role("button", name="Log in").click()
    await expect(tab.locator("#chat")).to_be_visible()
    await expect(tab.locator("#whoami")).to_have_text("Rhea")
    await expect(tab.locator("#signin-notice")).to_be_hidden()

    await elsewhere.close()
    await context.close()
    refused = "the server responded with a status of 40"  # the old password; the spent link
    for watch_ in (watched, elsewhere_watch):
        assert [error for error in watch_.errors if refused not in error] == []


async def test_sessions_page_lists_logins_and_ends_them(
    flows: ServerProcess, mail: MailServer, browser: Browser, screenshots: Path
) -> None:
    email = "sam@example.com"
    # An account made and verified over the API (no session: nothing logged in yet).
    async with httpx.AsyncClient(base_url=flows.base_url, timeout=10) as http:
        signup = {"name": "Sam", "email": email, "password": PASSWORD}
        assert (await http.post("/users", json=signup)).status_code == 201
        [verification] = await mail.wait_to(email, 1)
        verified = await http.post("/auth/verify-email", json={"token": token_in(verification)})
        assert verified.status_code == 204
    here, here_watch = await new_page(browser)
    page = here_watch.page
    await log_in(page, flows.base_url, email)
    await expect(page.locator("#verify-banner")).to_be_hidden()
    laptop, laptop_watch = await new_page(browser, user_agent=FIREFOX_ON_WINDOWS)
    await log_in(laptop_watch.page, flows.base_url, email)
    phone, phone_watch = await new_page(browser, viewport=PHONE, user_agent=SAFARI_ON_IPHONE)
    await log_in(phone_watch.page, flows.base_url, email)

    # By keyboard: the account menu opens with Enter, Escape closes it, Tab reaches
    # "Sessions".
    account = page.locator("#account-button")
    await account.focus()
    await page.keyboard.press("Enter")
    menu = page.locator("#account-menu")
    await expect(menu).to_be_visible()
    await expect(menu).to_contain_text(email)
    await page.keyboard.press("Escape")
    await expect(menu).to_be_hidden()
    await expect(account).to_be_focused()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    await expect(menu.get_by_role("link", name="Sessions")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#sessions")).to_be_visible()
    await expect(menu).to_be_hidden()
    assert page.url == f"{flows.base_url}/sessions"

    sessions = page.locator("#session-list .session")
    await expect(sessions).to_have_count(3)
    await expect(sessions.locator("h3")).to_have_text(
        ["Chrome on Linux", "Safari on iOS", "Firefox on Windows"]
    )  # this device first, then the latest used
    first = sessions.first
    await expect(first.locator(".tag")).to_have_text("This device")
    await expect(page.locator(".session .tag")).to_have_count(1)
    for session in await sessions.all():
        await expect(session).to_contain_text("Logged in")
        await expect(session).to_contain_text("Last active")
        await expect(session.locator("dd").last).to_have_text("127.0.0.1")
    await expect(first.locator("time").first).to_have_text(re.compile(r"just now|minutes? ago"))
    await expect(sessions.nth(2).locator(".agent")).to_have_text(FIREFOX_ON_WINDOWS)
    await page.screenshot(path=screenshots / "sessions.png")

    # Ending the laptop's session signs the laptop out, at once.
    laptop_item = sessions.filter(has_text="Firefox on Windows")
    await laptop_item.get_by_role("button", name="End session").click()
    await _signed_out(laptop_watch.page, why="Your session has ended")
    await expect(sessions).to_have_count(2)
    await expect(page.locator("#sessions-state")).to_have_text(
        "Ended the session of Firefox on Windows."
    )
    await expect(phone_watch.page.locator("#status")).to_have_text("Connected")

    # "End all other sessions" asks first, then signs the phone out.
    await page.get_by_role("button", name="End all other sessions").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("The other browser is logged out at once.")
    await dialog.get_by_role("button", name="End them").click()
    await _signed_out(phone_watch.page, why="Your session has ended")
    await expect(sessions).to_have_count(1)
    await expect(page.locator("#sessions-state")).to_have_text("Every other session has ended.")
    await expect(page.get_by_role("button", name="End all other sessions")).to_be_hidden()

    # This browser is still signed in (a reload keeps the page); ending its own session
    # logs out here.
    await page.reload()
    await expect(sessions).to_have_count(1)
    await expect(page.locator("#status")).to_have_text("Connected")
    await sessions.first.get_by_role("button", name="Log out").click()
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#account")).to_be_hidden()
    await expect(page.locator("#session-list .session")).to_have_count(0)
    assert page.url == f"{flows.base_url}/"
    await page.reload()
    await expect(page.locator("#login-form")).to_be_visible()

    for context in (here, laptop, phone):
        await context.close()
    assert not here_watch.errors, here_watch.errors
    # The ended sessions learnt it from their refresh, refused.
    refused = "the server responded with a status of 401"
    for watch_ in (laptop_watch, phone_watch):
        assert [error for error in watch_.errors if refused not in error] == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_account_flows_fit_360px_and_meet_contrast(
    flows: ServerProcess, browser: Browser, scheme: Literal["light", "dark"]
) -> None:
    context, watched = await new_page(browser, viewport=PHONE, color_scheme=scheme)
    page = watched.page

    async def check(where: str) -> None:
        await no_sideways_scroll(page)
        await readable(page, where)

    await page.goto(f"{flows.base_url}/#/verify?token=not-a-token")
    await expect(page.locator("#verify-state")).to_contain_text("This link is invalid")
    await check("verify page, link refused")
    await page.get_by_role("button", name="Log in").click()

    await page.get_by_role("button", name="Forgot password?").click()
    await page.locator("#forgot").get_by_label("Email").fill(f"nobody-{scheme}@example.com")
    await page.get_by_role("button", name="Email me a link").click()
    await expect(page.locator("#forgot-done")).to_be_visible()
    await check("forgot password, sent")

    await page.goto(f"{flows.base_url}/#/reset?token=not-a-token")
    await expect(page.get_by_label("New password", exact=True)).to_be_focused()
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat password").fill("something else")
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.locator("#reset-error")).to_contain_text("differ")
    await check("reset page, passwords differ")
    await page.get_by_label("Repeat password").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set the new password").click()
    await expect(page.get_by_role("button", name="Ask for a new link")).to_be_visible()
    await check("reset page, link refused")
    await page.get_by_role("button", name="Cancel").click()

    await sign_up(page, flows.base_url, "Pia with a long enough name", f"pia-{scheme}@example.com")
    await expect(page.locator("#verify-banner")).to_be_visible()
    await page.get_by_role("button", name="Email me a new link").click()
    await expect(page.locator("#resend-state")).to_have_attribute("data-tone", "ok")
    await check("banner, link sent")
    await page.get_by_role("button", name="Email me a new link").click()
    await expect(page.locator("#resend-state")).to_have_attribute("data-tone", "error")
    await check("banner, limit met")
    await create_room(page, f"unverified-{scheme}")
    await expect(page.locator("#room-notice")).to_be_visible()
    await check("room, not verified")

    await page.locator("#account-button").click()
    menu = page.locator("#account-menu")
    await expect(menu).to_be_visible()
    box = await menu.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"], box
    await check("account menu")
    await menu.get_by_role("link", name="Sessions").click()
    await expect(page.locator("#session-list .session")).to_have_count(1)
    await check("sessions page")
    await context.close()
    refused = "the server responded with a status of 4"  # the made-up tokens, the limit
    assert [error for error in watched.errors if refused not in error] == []
