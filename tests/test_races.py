"""Races the code handles return the stored result, never a 500, on both databases.

Each test lets every contender pass the check that would have refused it (a barrier
holds them just after it) before any of them writes, so the database constraint or
lock decides: the interleaving that used to fail, every time, not by chance.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import MakeAccount
from townsquare.rooms import service as rooms_service
from townsquare.users import service as users_service

CONTENDERS = 4


def hold_after(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, parties: int = CONTENDERS
) -> None:
    """Make `module.name` wait, once it has answered, until `parties` callers have."""
    barrier = asyncio.Barrier(parties)
    original: Callable[..., Awaitable[Any]] = getattr(module, name)

    async def held(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        try:
            async with asyncio.timeout(5):
                await barrier.wait()
        except TimeoutError:
            pass  # fewer callers than expected: let the test fail on its assertions
        return result

    monkeypatch.setattr(module, name, held)


async def test_parallel_adds_of_one_member_all_return_the_member(
    client: httpx.AsyncClient, make_account: MakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await make_account()
    member = await make_account()
    created = await client.post(
        "/rooms", json={"name": "club", "private": True}, headers=owner.headers
    )
    assert created.status_code == 201
    hold_after(monkeypatch, users_service, "get_user")
    responses = await asyncio.gather(
        *(
            client.put(f"/rooms/club/members/{member.id}", headers=owner.headers)
            for _ in range(CONTENDERS)
        )
    )
    assert [r.status_code for r in responses] == [200] * CONTENDERS, [r.text for r in responses]
    assert {r.json()["user"]["id"] for r in responses} == {member.id}
    members = await client.get("/rooms/club/members", headers=owner.headers)
    assert sorted(m["user"]["id"] for m in members.json()) == sorted([owner.id, member.id])


async def test_parallel_signups_with_one_email_give_one_201_and_409s(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_after(monkeypatch, users_service, "get_user_by_email")
    responses = await asyncio.gather(
        *(
            client.post(
                "/users",
                json={"name": f"N{i}", "email": "same@example.com", "password": "long enough"},
            )
            for i in range(CONTENDERS)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: CONTENDERS - 1}, [r.text for r in responses]


async def test_parallel_rooms_with_one_name_give_one_201_and_409s(
    client: httpx.AsyncClient, make_account: MakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    owners = [await make_account() for _ in range(CONTENDERS)]
    hold_after(monkeypatch, rooms_service, "_room_by_name")
    responses = await asyncio.gather(
        *(client.post("/rooms", json={"name": "same"}, headers=o.headers) for o in owners)
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: CONTENDERS - 1}, [r.text for r in responses]


async def test_parallel_refreshes_with_one_token_give_one_pair(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    responses = await asyncio.gather(
        *(
            client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
            for _ in range(CONTENDERS)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] <= 1
    assert statuses[200] + statuses[401] == CONTENDERS, [r.text for r in responses]


@pytest.mark.parametrize(
    ("first_change", "second_change"),
    [
        ({"is_admin": False}, {"is_admin": False}),
        ({"is_active": False}, {"is_admin": False}),
        ({"is_active": False}, {"is_active": False}),
    ],
    ids=["demote-demote", "disable-demote", "disable-disable"],
)
async def test_two_admins_taking_each_others_rights_at_once_leave_one(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    monkeypatch: pytest.MonkeyPatch,
    first_change: dict[str, bool],
    second_change: dict[str, bool],
) -> None:
    first = await make_account(admin=True)
    second = await make_account(admin=True)
    hold_after(monkeypatch, users_service, "get_user", parties=2)
    one, other = await asyncio.gather(
        client.patch(f"/users/{second.id}", json=first_change, headers=first.headers),
        client.patch(f"/users/{first.id}", json=second_change, headers=second.headers),
    )
    assert sorted([one.status_code, other.status_code]) == [200, 403], (one.text, other.text)
    monkeypatch.undo()
    winner = first if one.status_code == 200 else second
    users = (await client.get("/users", headers=winner.headers)).json()
    active_admins = [u for u in users if u["is_admin"] and u["is_active"]]
    assert [u["id"] for u in active_admins] == [winner.id]
