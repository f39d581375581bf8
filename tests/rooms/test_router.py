from __future__ import annotations

import httpx
import pytest

from tests.conftest import Account, MakeAccount


async def _room(
    client: httpx.AsyncClient, owner: Account, name: str = "general", **extra: object
) -> dict[str, object]:
    response = await client.post("/rooms", json={"name": name, **extra}, headers=owner.headers)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_create_room_returns_201_and_owner_is_member(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner = await make_account(name="Owner")
    room = await _room(client, owner, topic="All things")
    assert room["name"] == "general"
    assert room["topic"] == "All things"
    assert room["private"] is False
    assert room["owner_id"] == owner.id
    assert room["last_seq"] == 0
    members = (await client.get("/rooms/general/members", headers=owner.headers)).json()
    assert [(m["user"]["id"], m["role"]) for m in members] == [(owner.id, "owner")]


async def test_create_room_with_taken_name_returns_409(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner = await make_account()
    await _room(client, owner)
    again = await client.post("/rooms", json={"name": "general"}, headers=owner.headers)
    assert again.status_code == 409
    assert again.json()["detail"] == "A room with this name already exists"


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "Upper"},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "has space"},
        {"name": "ok", "extra": 1},
        {"name": "ok", "private": "maybe"},
        {"name": "ok", "topic": "t" * 201},
    ],
)
async def test_create_room_with_bad_input_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, payload: dict[str, object]
) -> None:
    owner = await make_account()
    response = await client.post("/rooms", json=payload, headers=owner.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_rooms_without_token_return_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/rooms")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_private_room_is_404_to_non_members_everywhere(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, stranger = await make_account(), await make_account()
    await _room(client, owner, name="secret", private=True)
    for method, path in [
        ("GET", "/rooms/secret"),
        ("GET", "/rooms/secret/members"),
        ("GET", "/rooms/secret/messages"),
        ("POST", "/rooms/secret/messages"),
        ("PUT", f"/rooms/secret/members/{stranger.id}"),
        ("DELETE", f"/rooms/secret/members/{owner.id}"),
    ]:
        body = {"body": "hi"} if method == "POST" else None
        response = await client.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["detail"] == "Room not found"
    unknown = await client.get("/rooms/nope", headers=stranger.headers)
    assert unknown.json()["detail"] == "Room not found"
    listed = (await client.get("/rooms", headers=stranger.headers)).json()
    assert listed == []


async def test_owner_adds_member_who_then_sees_private_room(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, friend = await make_account(), await make_account()
    await _room(client, owner, name="secret", private=True)
    added = await client.put(f"/rooms/secret/members/{friend.id}", headers=owner.headers)
    assert added.status_code == 200
    assert added.json()["role"] == "member"
    again = await client.put(f"/rooms/secret/members/{friend.id}", headers=owner.headers)
    assert again.status_code == 200
    assert (await client.get("/rooms/secret", headers=friend.headers)).status_code == 200
    assert [r["name"] for r in (await client.get("/rooms", headers=friend.headers)).json()] == [
        "secret"
    ]


async def test_member_cannot_add_others_to_private_room_returns_403(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, friend, other = await make_account(), await make_account(), await make_account()
    await _room(client, owner, name="secret", private=True)
    await client.put(f"/rooms/secret/members/{friend.id}", headers=owner.headers)
    response = await client.put(f"/rooms/secret/members/{other.id}", headers=friend.headers)
    assert response.status_code == 403


async def test_add_unknown_user_returns_404(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner = await make_account()
    await _room(client, owner)
    response = await client.put("/rooms/general/members/999999", headers=owner.headers)
    assert response.status_code == 404
    assert response.json()["detail"] == "User not found"


async def test_remove_member_returns_204_then_404(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, friend = await make_account(), await make_account()
    await _room(client, owner)
    await client.put(f"/rooms/general/members/{friend.id}", headers=friend.headers)
    removed = await client.delete(f"/rooms/general/members/{friend.id}", headers=owner.headers)
    assert removed.status_code == 204
    again = await client.delete(f"/rooms/general/members/{friend.id}", headers=owner.headers)
    assert again.status_code == 404
    owner_out = await client.delete(f"/rooms/general/members/{owner.id}", headers=owner.headers)
    assert owner_out.status_code == 409


async def test_admin_sees_and_manages_private_rooms(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, admin, friend = (
        await make_account(),
        await make_account(admin=True),
        await make_account(),
    )
    await _room(client, owner, name="secret", private=True)
    assert (await client.get("/rooms/secret", headers=admin.headers)).status_code == 200
    added = await client.put(f"/rooms/secret/members/{friend.id}", headers=admin.headers)
    assert added.status_code == 200


async def test_post_messages_get_consecutive_seq_and_history_pages(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner = await make_account(name="Ann")
    await _room(client, owner)
    for index in range(1, 8):
        posted = await client.post(
            "/rooms/general/messages", json={"body": f"m{index}"}, headers=owner.headers
        )
        assert posted.status_code == 201
        body = posted.json()
        assert body["seq"] == index
        assert body["author"] == {"id": owner.id, "name": "Ann"}
        assert body["room"] == "general"

    async def seqs(query: str) -> list[int]:
        response = await client.get(f"/rooms/general/messages?{query}", headers=owner.headers)
        assert response.status_code == 200
        return [m["seq"] for m in response.json()]

    assert await seqs("") == [1, 2, 3, 4, 5, 6, 7]
    assert await seqs("limit=3") == [5, 6, 7]
    assert await seqs("after_seq=2&limit=3") == [3, 4, 5]
    assert await seqs("before_seq=4") == [1, 2, 3]
    assert await seqs("before_seq=6&limit=2") == [4, 5]
    assert await seqs("after_seq=2&before_seq=5") == [3, 4]
    assert await seqs("after_seq=7") == []
    room = (await client.get("/rooms/general", headers=owner.headers)).json()
    assert room["last_seq"] == 7


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=201", "after_seq=-1", "before_seq=x", "after_seq=99999999999"]
)
async def test_history_with_bad_query_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, query: str
) -> None:
    owner = await make_account()
    await _room(client, owner)
    response = await client.get(f"/rooms/general/messages?{query}", headers=owner.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("payload", [{}, {"body": ""}, {"body": "   "}, {"body": "x" * 4001}])
async def test_post_message_with_bad_body_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, payload: dict[str, object]
) -> None:
    owner = await make_account()
    await _room(client, owner)
    response = await client.post("/rooms/general/messages", json=payload, headers=owner.headers)
    assert response.status_code == 422


async def test_post_message_with_idempotency_key_twice_stores_once(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner, other = await make_account(), await make_account()
    await _room(client, owner)
    headers = {**owner.headers, "Idempotency-Key": "key-1"}
    first = await client.post("/rooms/general/messages", json={"body": "hi"}, headers=headers)
    second = await client.post("/rooms/general/messages", json={"body": "hi"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    # The key is the user's own: another user with the same key posts a new message.
    theirs = await client.post(
        "/rooms/general/messages",
        json={"body": "hi"},
        headers={**other.headers, "Idempotency-Key": "key-1"},
    )
    assert theirs.json()["seq"] == 2
    changed = await client.post("/rooms/general/messages", json={"body": "bye"}, headers=headers)
    assert changed.status_code == 422
    history = (await client.get("/rooms/general/messages", headers=owner.headers)).json()
    assert [m["seq"] for m in history] == [1, 2]
