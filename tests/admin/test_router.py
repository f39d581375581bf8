"""GET /admin/stats: live figures of the deployment, for admins only."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import MakeAccount, make_settings
from tests.platform.conftest import serve_app
from tests.support.brokers import random_prefix, require_shared_redis
from townsquare.main import create_app
from townsquare.platform.instances import RedisInstances


async def test_stats_for_an_admin_count_users_rooms_messages_and_this_instance(
    client: httpx.AsyncClient, make_account: MakeAccount, app: FastAPI
) -> None:
    admin = await make_account(admin=True)
    before = await client.get("/admin/stats", headers=admin.headers)
    assert before.status_code == 200, before.text
    member = await make_account()
    for name in ("one", "two"):
        created = await client.post("/rooms", json={"name": name}, headers=member.headers)
        assert created.status_code == 201
    for body in ("a", "b", "c"):
        await client.post("/rooms/one/messages", json={"body": body}, headers=member.headers)

    response = await client.get("/admin/stats", headers=admin.headers)

    assert response.status_code == 200, response.text
    stats = response.json()
    grew = {key: stats["totals"][key] - before.json()["totals"][key] for key in stats["totals"]}
    assert (grew["users"], grew["rooms"], grew["messages"]) == (1, 2, 3)
    assert stats["instances_known"] is True
    assert [instance["id"] for instance in stats["instances"]] == [app.state.instances.id]
    assert stats["broker"] == {"backend": "memory", "healthy": True}


async def test_stats_for_a_member_return_403_and_without_token_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    member = await make_account()
    assert (await client.get("/admin/stats", headers=member.headers)).status_code == 403
    assert (await client.get("/admin/stats")).status_code == 401


async def test_stats_with_redis_list_every_instance_sharing_it(database_url: str) -> None:
    redis_url = await require_shared_redis()
    prefix = random_prefix()
    first = create_app(
        make_settings(database_url=database_url, redis_url=redis_url, broker_channel_prefix=prefix)
    )
    second = create_app(
        make_settings(database_url=database_url, redis_url=redis_url, broker_channel_prefix=prefix)
    )
    async with serve_app(first) as one, serve_app(second):
        signup = {"name": "Root", "email": "root@example.com", "password": "long password"}
        user = (await one.post("/users", json=signup)).json()
        from townsquare.users.models import User

        async with first.state.database.sessions() as session:
            row = await session.get(User, user["id"])
            assert row is not None
            row.is_admin = True
            await session.commit()
        login = {"username": signup["email"], "password": signup["password"]}
        token = (await one.post("/auth/token", data=login)).json()["access_token"]
        stats = (await one.get("/admin/stats", headers={"Authorization": f"Bearer {token}"})).json()
        assert {i["id"] for i in stats["instances"]} == {
            first.state.instances.id,
            second.state.instances.id,
        }
        assert stats["broker"]["backend"] == "redis"
    # Each withdrew its report on shutdown.
    store = RedisInstances(redis_url, prefix=prefix)
    assert await store.reports() == []
    await store.aclose()
