"""What a run needs in one place: its plan (full or quick), the servers, the load
generators, and the accounts it signed up."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt

from bench.harness import Bench, Workers
from bench.procs import BENCH_SECRET, Postgres, PrivateRedis, Server

PASSWORD = "bench password 123"  # noqa: S105 (throwaway accounts on a throwaway database)


@dataclass(frozen=True)
class Plan:
    name: str
    http_seconds: float
    http_rounds: int
    sweep: tuple[int, ...]
    sweep_rounds: int
    subscribers: int
    burst: int
    paced_seconds: float
    paced_rate: float
    hot_members: int
    hot_seconds: float
    room_rounds: int
    idle_sockets: int
    replay_messages: int
    replay_rounds: int
    deadline_seconds: float


FULL = Plan(
    name="full",
    http_seconds=4,
    http_rounds=3,
    sweep=(10, 50, 200, 500),
    sweep_rounds=1,  # no stall is shown by each run; the 50-connection medians are B1's
    subscribers=500,
    burst=2000,
    paced_seconds=8,
    paced_rate=50,
    hot_members=20,
    hot_seconds=5,
    room_rounds=2,
    idle_sockets=1000,
    replay_messages=10_000,
    replay_rounds=3,
    deadline_seconds=570,
)
QUICK = Plan(
    name="quick",
    http_seconds=2,
    http_rounds=1,
    sweep=(10, 500),
    sweep_rounds=1,
    subscribers=100,
    burst=200,
    paced_seconds=2,
    paced_rate=50,
    hot_members=20,
    hot_seconds=1.5,
    room_rounds=1,
    idle_sockets=200,
    replay_messages=1000,
    replay_rounds=1,
    deadline_seconds=110,
)


@dataclass
class Account:
    id: int
    token: str


@dataclass
class Context:
    plan: Plan
    bench: Bench
    workers: Workers
    redis: PrivateRedis
    postgres: Postgres
    logs: Path
    server_env: dict[str, str]
    servers: dict[str, Server] = field(default_factory=dict)
    accounts: dict[str, list[Account]] = field(default_factory=dict)
    pg_dsn: str = ""

    def reserve(self, share: float) -> float:
        """Seconds of the deadline to keep for later sections: `share` of the plan's."""
        return share * self.plan.deadline_seconds

    async def start(self, server: Server) -> Server:
        await server.start()
        self.servers[server.name] = server
        return server

    def stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()

    def stop_all(self) -> None:
        for name in list(self.servers):
            self.stop(name)


async def sign_up(server: Server, count: int, concurrency: int = 16) -> list[Account]:
    """`count` accounts on a townsquare server, through its public API."""
    stamp = time.time_ns()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as client:

        async def one(n: int) -> Account:
            email = f"bench{stamp}-{n}@example.com"
            async with gate:
                created = await client.post(
                    "/users", json={"name": f"Bench {n}", "email": email, "password": PASSWORD}
                )
                created.raise_for_status()
                login = await client.post(
                    "/auth/token", data={"username": email, "password": PASSWORD}
                )
                login.raise_for_status()
            return Account(created.json()["id"], login.json()["access_token"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def create_room(server: Server, account: Account, name: str) -> None:
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as client:
        response = await client.post(
            "/rooms", json={"name": name}, headers={"Authorization": f"Bearer {account.token}"}
        )
        if response.status_code not in (201, 409):
            response.raise_for_status()


def peer_tokens(count: int) -> list[str]:
    """JWTs for the python-socketio peer (it verifies them on connect)."""
    return [jwt.encode({"sub": str(n)}, BENCH_SECRET, algorithm="HS256") for n in range(count)]
