"""gunicorn with two uvicorn workers sharing PostgreSQL and Redis: every member, on
either worker, gets every message exactly once and in seq order."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.rooms.wsclient import Member, history, make_room
from tests.scale.cluster import BASE_ENV, WAIT, Listener, close_all, signup_many
from tests.support.brokers import random_prefix
from tests.support.gunicorn import run_gunicorn
from tests.support.server import ServerProcess
from townsquare.client import Api

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

FIRST_BATCH, MOST_SOCKETS = 8, 32
WS_MESSAGES_PER_LISTENER = 25
REST_SENDERS, REST_MESSAGES = 2, 50

OPEN_SOCKETS = re.compile(r'^townsquare_websockets_open\{pid="(\d+)"\} (\S+)$', re.MULTILINE)


@pytest.fixture(scope="module")
def gunicorn(
    shared_database_url: str, shared_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {
        **BASE_ENV,
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        "GRACEFUL_TIMEOUT": "10",
        "LOG_LEVEL": "INFO",  # run_gunicorn waits for each worker's start-up line
    }
    with run_gunicorn(env, tmp_path_factory.mktemp("gunicorn") / "server.log") as server:
        yield server


async def _sockets_per_worker(http: httpx.AsyncClient) -> dict[str, int]:
    """Open WebSockets per worker pid, from the merged /metrics."""
    text = (await http.get("/metrics")).text
    return {pid: int(float(value)) for pid, value in OPEN_SOCKETS.findall(text)}


async def _open_on_both_workers(
    server: ServerProcess, http: httpx.AsyncClient
) -> tuple[list[Listener], dict[str, int]]:
    """Open sockets until both workers hold some. One at a time: the kernel wakes
    every worker for each new connection and whichever accepts first takes it, but
    a worker woken by a burst accepts the whole backlog at once, so a burst tends to
    land on one worker."""
    members = await signup_many(http, MOST_SOCKETS, "W")
    listeners: list[Listener] = []
    busy: dict[str, int] = {}
    for member in members:
        listeners.append(await Listener.open(server, member))
        if len(listeners) >= FIRST_BATCH:
            per_worker = await _sockets_per_worker(http)
            busy = {pid: n for pid, n in per_worker.items() if n > 0}
            if len(busy) >= 2:
                break
        await asyncio.sleep(0.01)
    return listeners, busy


async def _send_over_ws(listener: Listener, room: str) -> list[str]:
    bodies = [f"ws-{listener.member.id}-{i}" for i in range(WS_MESSAGES_PER_LISTENER)]
    for body in bodies:
        await listener.say(room, body, client_id=body)
        await asyncio.sleep(0)
    return bodies


async def _send_over_rest(http: httpx.AsyncClient, member: Member, room: str) -> list[str]:
    bodies = [f"rest-{member.id}-{i}" for i in range(REST_MESSAGES)]
    for body in bodies:
        # httpx rather than townsquare.client.Api: a new connection each time (a
        # header Api does not send), so both workers take some.
        response = await http.post(
            f"/rooms/{room}/messages",
            json={"body": body},
            headers={**member.headers, "Connection": "close"},
        )
        assert response.status_code == 201, response.text
    return bodies


async def test_senders_on_two_gunicorn_workers_reach_every_member_once_in_seq_order(
    gunicorn: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=gunicorn.base_url, timeout=WAIT) as http:
        listeners, per_worker = await _open_on_both_workers(gunicorn, http)
        try:
            print(f"\nWebSockets per gunicorn worker (pid: count): {per_worker}")
            assert len(per_worker) == 2, f"all sockets on one worker: {per_worker}"
            assert sum(per_worker.values()) == len(listeners)
            owner = listeners[0].member
            room = await make_room(http, owner)
            for listener in listeners:
                await listener.join(room)

            sends = [_send_over_ws(listener, room) for listener in listeners]
            sends += [_send_over_rest(http, x.member, room) for x in listeners[:REST_SENDERS]]
            sent = [body for bodies in await asyncio.gather(*sends) for body in bodies]
            async with Api(gunicorn.base_url, token=owner.token) as api:
                total = (await api.post_message(room, "the end")).seq
            assert total == len(sent) + 1

            for listener in listeners:
                assert await listener.has_seq(room, total, within=30), (
                    f"{listener.member.name} stopped at {listener.last_seq(room)} of {total}"
                )
            stored = await history(http, room, owner)
            assert [m.seq for m in stored] == list(range(1, total + 1))
            assert {m.body for m in stored} == {*sent, "the end"}
            expected = [(m.seq, m.body) for m in stored]
            for listener in listeners:
                got = [(m.seq, m.body) for m in listener.messages(room)]
                assert got == expected, listener.member.name
        finally:
            await close_all(listeners)
