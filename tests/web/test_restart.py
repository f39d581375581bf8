"""The server restarts under an open page: nothing missed, nothing twice, nothing lost."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support.server import free_port, run_server
from tests.web.conftest import api_user, log_in, new_page, room_button, send, server_env

pytestmark = pytest.mark.e2e


# With the default WS_REPLAY_MAX the rejoin replays what was missed; with 2 the server
# replays nothing (joined.recovered is false) and the page pages the gap over REST.
@pytest.mark.parametrize("replay_max", ["1000", "2"], ids=["replayed", "paged"])
async def test_restart_with_messages_sent_meanwhile_shows_each_once_in_order_and_sends_pending(
    browser: Browser, tmp_path: Path, replay_max: str
) -> None:
    # A short drain: the page is told `bye` at once either way.
    env = server_env(tmp_path, GRACEFUL_TIMEOUT="3", WS_REPLAY_MAX=replay_max)
    port = free_port()
    with ExitStack() as stack:
        first = stack.enter_context(run_server(env, tmp_path / "first.log", port=port))
        base = first.base_url
        poster = await api_user(base, "Poster", "poster@example.com")
        reader = await api_user(base, "Reader", "reader@example.com")
        async with httpx.AsyncClient(base_url=base, headers=poster.headers) as http:
            assert (await http.post("/rooms", json={"name": "ops"})).status_code == 201
            for number in (1, 2):
                await http.post("/rooms/ops/messages", json={"body": f"before {number}"})

        context, watched = await new_page(browser)
        page = watched.page
        await log_in(page, base, reader.email)
        await room_button(page, "ops").click()
        bodies = page.locator(".message:not(.pending) .body")
        await expect(bodies).to_have_text(["before 1", "before 2"])

        # The server goes away (SIGTERM: it says bye and closes the socket).
        stack.close()
        status = page.locator("#status")
        await expect(status).not_to_have_text("Connected")
        await expect(page.locator("#online")).not_to_contain_text("online")  # not stale

        # Typed during the outage: shown at once, marked as waiting.
        await send(page, "typed while offline")
        pending = page.locator(".message.pending")
        await expect(pending.locator(".body")).to_have_text("typed while offline")
        await expect(pending.locator(".state")).to_have_text("Waiting for connection…")
        await expect(pending).to_be_visible()

        # Keep the page away while the server is back and others write: it must
        # recover these from the server, not see them live.
        await context.set_offline(True)
        stack.enter_context(run_server(env, tmp_path / "second.log", port=port))
        async with httpx.AsyncClient(base_url=base, headers=poster.headers) as http:
            for number in (1, 2, 3):
                posted = await http.post("/rooms/ops/messages", json={"body": f"during {number}"})
                assert posted.status_code == 201, posted.text
        await expect(pending).to_be_visible()
        await context.set_offline(False)

        await expect(status).to_have_text("Connected", timeout=20_000)
        expected = ["before 1", "before 2", "during 1", "during 2", "during 3"]
        await expect(bodies).to_have_text([*expected, "typed while offline"])
        await expect(pending).to_have_count(0)
        seqs = await page.locator(".message").evaluate_all(
            "items => items.map(item => Number(item.dataset.seq))"
        )
        assert seqs == [1, 2, 3, 4, 5, 6]
        # Stored once, however many times the page tried.
        async with httpx.AsyncClient(base_url=base, headers=poster.headers) as http:
            stored = (await http.get("/rooms/ops/messages")).json()
        assert [m["body"] for m in stored] == [*expected, "typed while offline"]
        await context.close()
