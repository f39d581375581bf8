"""How the page handles the room engine's `left` frame and a `joined` with
`recovered: false` (a gap larger than the server replays).

The page talks to the real server through Playwright's WebSocket routing, which lets
the test close the connection, hold reconnects, and make the server's answer to a
rejoin look like one that replayed nothing (as the engine does past WS_REPLAY_MAX).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.support.server import ServerProcess
from tests.web.conftest import api_user, log_in, new_page, room_button

pytestmark = pytest.mark.e2e


@dataclass
class Proxy:
    """Passes frames between the page and the server, with switches for the test."""

    room: str
    hold: bool = False  # refuse new connections (the server looks down)
    unrecover: bool = False  # the next rejoin of `room` answers recovered=false
    routes: list[WebSocketRoute] = field(default_factory=list)
    sent: list[dict[str, object]] = field(default_factory=list)  # page -> server

    async def handle(self, route: WebSocketRoute) -> None:
        if self.hold:
            await route.close(code=1012, reason="held by the test")
            return
        server = route.connect_to_server()
        self.routes.append(route)
        dropping = False

        async def from_page(message: str | bytes) -> None:
            nonlocal dropping
            frame = json.loads(message)
            self.sent.append(frame)
            if frame.get("type") == "join" and frame.get("room") == self.room and dropping:
                dropping = False  # the page joined again: deliver as the server does
            server.send(message)

        async def from_server(message: str | bytes) -> None:
            nonlocal dropping
            frame = json.loads(message)
            if frame.get("room") == self.room:
                if frame["type"] == "joined" and self.unrecover and self.sent_since():
                    self.unrecover = False
                    dropping = True
                    frame["recovered"] = False
                    route.send(json.dumps(frame))
                    return
                if frame["type"] == "message" and dropping:
                    return  # not replayed
            route.send(message)

        route.on_message(from_page)
        server.on_message(from_server)

    def sent_since(self) -> bool:
        joins = [f for f in self.sent if f.get("type") == "join" and f.get("room") == self.room]
        return bool(joins) and "since" in joins[-1]


async def _open_room(browser: Browser, server: ServerProcess, email: str, room: str) -> Page:
    _context, watched = await new_page(browser)
    page = watched.page
    await log_in(page, server.base_url, email)
    await room_button(page, room).click()
    return page


async def test_joined_without_recovery_pages_the_gap_and_joins_again(
    server: ServerProcess, browser: Browser
) -> None:
    writer = await api_user(server.base_url, "Writer", "writer-gap@example.com")
    await api_user(server.base_url, "Reader", "reader-gap@example.com")
    async with httpx.AsyncClient(base_url=server.base_url, headers=writer.headers) as http:
        assert (await http.post("/rooms", json={"name": "gap"})).status_code == 201
        for number in (1, 2):
            await http.post("/rooms/gap/messages", json={"body": f"seen {number}"})

        proxy = Proxy(room="gap")
        _context, watched = await new_page(browser)
        page = watched.page
        await page.route_web_socket("**/ws", proxy.handle)
        await log_in(page, server.base_url, "reader-gap@example.com")
        await room_button(page, "gap").click()
        bodies = page.locator(".message:not(.pending) .body")
        await expect(bodies).to_have_text(["seen 1", "seen 2"])

        # The connection drops and stays down while five messages are written.
        proxy.hold = True
        await proxy.routes[-1].close(code=1012, reason="restart")
        await expect(page.locator("#status")).not_to_have_text("Connected")
        for number in range(1, 6):
            await http.post("/rooms/gap/messages", json={"body": f"missed {number}"})

        # Back: the server's answer to the rejoin replays nothing (recovered=false).
        proxy.unrecover = True
        proxy.hold = False
        await expect(page.locator("#status")).to_have_text("Connected", timeout=20_000)
        missed = [f"missed {number}" for number in range(1, 6)]
        await expect(bodies).to_have_text(["seen 1", "seen 2", *missed])
        seqs = await page.locator(".message").evaluate_all(
            "items => items.map(item => Number(item.dataset.seq))"
        )
        assert seqs == [1, 2, 3, 4, 5, 6, 7]
        # Paged over REST, then joined again from the newer position.
        joins = [f for f in proxy.sent if f.get("type") == "join" and f.get("room") == "gap"]
        assert joins[-2:] == [
            {"type": "join", "room": "gap", "since": 2},
            {"type": "join", "room": "gap", "since": 7},
        ]
        # Live messages go on, once each.
        await http.post("/rooms/gap/messages", json={"body": "live again"})
        await expect(bodies).to_have_text(["seen 1", "seen 2", *missed, "live again"])


@pytest.mark.parametrize(
    ("reason", "notice"),
    [
        ("removed", "You were removed from this room."),
        ("room_deleted", "This room was deleted."),
        ("access_revoked", "You no longer have access to this room."),
    ],
)
async def test_left_frame_says_why_the_room_stopped(
    server: ServerProcess, browser: Browser, reason: str, notice: str
) -> None:
    owner = await api_user(server.base_url, "Owner", f"owner-{reason}@example.com")
    await api_user(server.base_url, "Guest", f"guest-{reason}@example.com")
    room = f"left-{reason.replace('_', '-')}"
    async with httpx.AsyncClient(base_url=server.base_url, headers=owner.headers) as http:
        assert (await http.post("/rooms", json={"name": room})).status_code == 201
        await http.post(f"/rooms/{room}/messages", json={"body": "before"})
    proxy = Proxy(room=room)
    _context, watched = await new_page(browser)
    page = watched.page
    await page.route_web_socket("**/ws", proxy.handle)
    await log_in(page, server.base_url, f"guest-{reason}@example.com")
    await room_button(page, room).click()
    await expect(page.locator("#online")).to_have_text("1 online")

    # What the room engine sends when a member is removed, the room deleted, or access
    # taken away.
    proxy.routes[-1].send(json.dumps({"type": "left", "room": room, "reason": reason}))
    await expect(page.locator("#room-notice")).to_have_text(notice)
    await expect(page.locator("#room-notice")).to_be_visible()
    # Nobody is shown online in a room the page is no longer in, and nothing can be
    # sent to it.
    await expect(page.locator("#online")).not_to_contain_text("online")
    await expect(page.get_by_label("Message", exact=True)).to_be_disabled()
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()
