"""The per-account sign-in throttle: many addresses guessing one account's password end
in 429, while the owner, signing in from an address they used before, is not locked out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from tests.conftest import make_settings
from townsquare.main import create_app

PASSWORD = "the right password"
ClientFor = Callable[[str], httpx.AsyncClient]


@asynccontextmanager
async def served(database_url: str, **overrides: object) -> AsyncIterator[ClientFor]:
    """The app with rate limiting on, and a client per source address."""
    settings = {
        "rate_limit_enabled": True,
        "rate_limit_login": "100/minute",
        "rate_limit_login_account": "5/hour",
        **overrides,
    }
    app: FastAPI = create_app(make_settings(database_url=database_url, **settings))
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:

        def client_for(ip: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(ip, 40000))
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(client.aclose)
            return client

        yield client_for


def login(email: str, password: str) -> dict[str, str]:
    return {"username": email, "password": password}


async def test_wrong_passwords_for_one_account_from_many_addresses_end_in_429(
    database_url: str,
) -> None:
    async with served(database_url) as client_for:
        owner = client_for("192.0.2.1")
        signup = {"name": "Owner", "email": "owner@example.com", "password": PASSWORD}
        assert (await owner.post("/users", json=signup)).status_code == 201
        statuses = [
            (
                await client_for(f"198.51.100.{n}").post(
                    "/auth/token", data=login("Owner@Example.com", f"guess {n}")
                )
            ).status_code
            for n in range(8)
        ]
        refused = await client_for("198.51.100.99").post(
            "/auth/token", data=login("owner@example.com", PASSWORD)
        )
    # Each address tried once (far under the per-address limit); the account's 5 ran out.
    assert statuses == [401] * 5 + [429] * 3
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert refused.json()["detail"] == "Too many sign-in attempts for this account, retry later"


async def test_owner_signs_in_from_a_known_address_during_an_attack(database_url: str) -> None:
    async with served(database_url) as client_for:
        owner = client_for("192.0.2.7")
        signup = {"name": "Owner", "email": "known@example.com", "password": PASSWORD}
        assert (await owner.post("/users", json=signup)).status_code == 201
        # The owner signed in from this address before the attack.
        assert (
            await owner.post("/auth/token", data=login("known@example.com", PASSWORD))
        ).status_code == 200
        attack = [
            (
                await client_for(f"203.0.113.{n}").post(
                    "/auth/token", data=login("known@example.com", "wrong")
                )
            ).status_code
            for n in range(10)
        ]
        during = await owner.post("/auth/token", data=login("known@example.com", PASSWORD))
    assert attack[-1] == 429
    assert during.status_code == 200


async def test_unknown_account_is_throttled_like_a_known_one(database_url: str) -> None:
    async with served(database_url) as client_for:
        statuses = [
            (
                await client_for(f"198.51.100.{n}").post(
                    "/auth/token", data=login("nobody@example.com", "guess")
                )
            ).status_code
            for n in range(7)
        ]
    assert statuses == [401] * 5 + [429] * 2


async def test_x_forwarded_for_alone_does_not_change_the_client_address(database_url: str) -> None:
    # Per-address login limit of 2: X-Forwarded-For must not give a client a fresh
    # budget per request. The ASGI app sees the proxy's view (uvicorn sets the client
    # from X-Forwarded-For only for FORWARDED_ALLOW_IPS), so here the header is ignored.
    async with served(
        database_url, rate_limit_login="2/minute", rate_limit_login_account="100/hour"
    ) as client_for:
        client = client_for("198.51.100.5")
        statuses = [
            (
                await client.post(
                    "/auth/token",
                    data=login("x@example.com", "guess"),
                    headers={"X-Forwarded-For": f"10.0.0.{n}"},
                )
            ).status_code
            for n in range(3)
        ]
    assert statuses == [401, 401, 429]
