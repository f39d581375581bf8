"""One user's sockets are counted across instances (Redis), not per process."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.rooms.wsclient import connect, signup
from tests.scale.cluster import WAIT
from tests.support.brokers import random_prefix
from tests.support.server import ServerProcess
from townsquare.rooms.protocol import AuthFrame, ByeFrame, WelcomeFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PER_USER = 3


@pytest.fixture(scope="module")
def instances_env(shared_database_url: str, shared_redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        "WS_MAX_CONNECTIONS_PER_USER": str(PER_USER),
    }


async def test_one_users_sockets_are_limited_across_instances(
    instances: list[ServerProcess],
) -> None:
    a, b = instances
    async with httpx.AsyncClient(base_url=a.base_url, timeout=WAIT) as http:
        member = await signup(http, "Many")
    on_a = [await connect(a, member) for _ in range(PER_USER - 1)]
    on_b = await connect(b, member)
    # The limit is reached on A and B together: one more, on either, is refused.
    for server in (b, a):
        extra = await connect(server)  # no header: authenticates with a frame
        await extra.send(AuthFrame(type="auth", token=member.token))
        code, frames = await extra.closed()
        assert code == 1008
        assert isinstance(frames[-1], ByeFrame)
        assert "at most 3 per user" in frames[-1].reason
    # A closed socket gives its slot back, to any instance (once A has released it,
    # right after the close handshake).
    await on_a[0].close()
    async with asyncio.timeout(WAIT):
        while True:
            again = await connect(b)
            await again.send(AuthFrame(type="auth", token=member.token))
            if isinstance(await again.recv(), WelcomeFrame):
                break
            await again.close()
            await asyncio.sleep(0.05)
    for client in (*on_a[1:], on_b, again):
        await client.close()
