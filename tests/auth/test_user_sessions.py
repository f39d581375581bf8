"""GET /auth/sessions and DELETE /auth/sessions/{id}: one's logins, and ending one."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import Account, MakeAccount
from townsquare.auth.revocations import AccountChange, ChangeKind


async def _login(
    client: httpx.AsyncClient, account: Account, agent: str
) -> tuple[dict[str, str], str]:
    response = await client.post(
        "/auth/token",
        data={"username": account.email, "password": account.password},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    pair = response.json()
    return {"Authorization": f"Bearer {pair['access_token']}"}, pair["refresh_token"]


def _record(app: FastAPI) -> list[AccountChange]:
    seen: list[AccountChange] = []

    async def listener(change: AccountChange) -> None:
        seen.append(change)

    app.state.revocations.add_listener(listener)
    return seen


async def test_sessions_lists_each_login_with_its_client_and_marks_the_current_one(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    laptop, _ = await _login(client, account, "Laptop/1.0")
    phone, phone_refresh = await _login(client, account, "Phone/2.0")
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": phone_refresh}, headers={"User-Agent": "Phone/2.1"}
    )
    assert refreshed.status_code == 200

    listed = await client.get("/auth/sessions", headers=laptop)
    assert listed.status_code == 200
    sessions = listed.json()
    # make_account's own login, the laptop and the phone; the last used first.
    assert [s["user_agent"] for s in sessions][:2] == ["Phone/2.1", "Laptop/1.0"]
    assert len(sessions) == 3
    assert [s["current"] for s in sessions] == [False, True, False]
    phone_session = sessions[0]
    assert phone_session["last_used_at"] > phone_session["created_at"]
    assert phone_session["client_ip"] == "127.0.0.1"
    assert {s["id"] for s in sessions} == {
        s["id"] for s in (await client.get("/auth/sessions", headers=phone)).json()
    }


async def test_deleting_a_session_ends_its_tokens_at_once_and_announces_it(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    changes = _record(app)
    account = await make_account()
    laptop, _ = await _login(client, account, "Laptop")
    phone, phone_refresh = await _login(client, account, "Phone")
    [phone_id] = [
        s["id"]
        for s in (await client.get("/auth/sessions", headers=laptop)).json()
        if s["user_agent"] == "Phone"
    ]
    assert (await client.get("/me", headers=phone)).status_code == 200  # warm any cache

    deleted = await client.delete(f"/auth/sessions/{phone_id}", headers=laptop)
    assert deleted.status_code == 204
    assert AccountChange(account.id, ChangeKind.SESSION_ENDED, phone_id) in changes
    assert (await client.get("/me", headers=phone)).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": phone_refresh})
    assert refresh.status_code == 401
    # The other logins go on.
    assert (await client.get("/me", headers=laptop)).status_code == 200
    assert (await client.get("/me", headers=account.headers)).status_code == 200
    remaining = (await client.get("/auth/sessions", headers=laptop)).json()
    assert phone_id not in {s["id"] for s in remaining}
    again = await client.delete(f"/auth/sessions/{phone_id}", headers=laptop)
    assert again.status_code == 404


async def test_deleting_another_users_session_returns_404(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    ann = await make_account()
    bob = await make_account()
    [bobs] = (await client.get("/auth/sessions", headers=bob.headers)).json()
    for target in (bobs["id"], "0" * 32, "not-a-session"):
        response = await client.delete(f"/auth/sessions/{target}", headers=ann.headers)
        assert response.status_code == 404, target
        assert response.json()["detail"] == "Session not found"
    assert (await client.get("/me", headers=bob.headers)).status_code == 200


async def test_logout_ends_the_current_session_and_announces_it(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    changes = _record(app)
    account = await make_account()
    [current] = (await client.get("/auth/sessions", headers=account.headers)).json()
    response = await client.post("/auth/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204
    assert AccountChange(account.id, ChangeKind.SESSION_ENDED, current["id"]) in changes
    assert (await client.get("/me", headers=account.headers)).status_code == 401


async def test_logout_all_leaves_no_session_listed(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    await _login(client, account, "Other")
    assert (await client.post("/auth/logout-all", headers=account.headers)).status_code == 204
    fresh, _ = await _login(client, account, "Fresh")
    [only] = (await client.get("/auth/sessions", headers=fresh)).json()
    assert only["user_agent"] == "Fresh"
    assert only["current"] is True
