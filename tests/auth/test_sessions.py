"""Ending every session of an account: logout-all, password change, an admin disabling it."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import MakeAccount
from townsquare.auth.revocations import AccountChange, ChangeKind


def _record_revocations(app: FastAPI) -> list[int]:
    seen: list[int] = []

    async def listener(change: AccountChange) -> None:
        if change.kind is ChangeKind.SESSIONS_ENDED:
            seen.append(change.user_id)

    app.state.revocations.add_listener(listener)
    return seen


async def test_logout_all_ends_access_and_refresh_tokens(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    revoked = _record_revocations(app)
    account = await make_account()
    other = await make_account()
    response = await client.post("/auth/logout-all", headers=account.headers)
    assert response.status_code == 204
    assert (await client.get("/me", headers=account.headers)).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401
    assert revoked == [account.id]
    # Nobody else is affected.
    assert (await client.get("/me", headers=other.headers)).status_code == 200


async def test_password_change_announces_the_revocation(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    revoked = _record_revocations(app)
    account = await make_account()
    await client.patch("/me", headers=account.headers, json={"name": "Only a name"})
    assert revoked == []
    await client.patch(
        "/me",
        headers=account.headers,
        json={"password": "another password", "current_password": account.password},
    )
    assert revoked == [account.id]


async def test_failing_revocation_listener_does_not_fail_the_request(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    async def broken(_user_id: int) -> None:
        raise ConnectionError("broker down")

    app.state.revocations.add_listener(broken)
    account = await make_account()
    assert (await client.post("/auth/logout-all", headers=account.headers)).status_code == 204


async def test_admin_disabling_a_user_ends_their_sessions_and_blocks_login(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    revoked = _record_revocations(app)
    admin = await make_account(admin=True)
    bob = await make_account()
    response = await client.patch(
        f"/users/{bob.id}", headers=admin.headers, json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert revoked == [bob.id]
    assert (await client.get("/me", headers=bob.headers)).status_code == 401
    login = await client.post("/auth/token", data={"username": bob.email, "password": bob.password})
    assert login.status_code == 403
    assert login.json()["detail"] == "This account is disabled"

    enabled = await client.patch(
        f"/users/{bob.id}", headers=admin.headers, json={"is_active": True}
    )
    assert enabled.json()["is_active"] is True
    again = await client.post("/auth/token", data={"username": bob.email, "password": bob.password})
    assert again.status_code == 200


async def test_non_admin_cannot_update_other_users(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    ann = await make_account()
    bob = await make_account()
    response = await client.patch(
        f"/users/{bob.id}", headers=ann.headers, json={"is_active": False}
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "Administrator rights required"


async def test_admin_cannot_disable_or_demote_themself(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    for body in ({"is_active": False}, {"is_admin": False}):
        response = await client.patch(f"/users/{admin.id}", headers=admin.headers, json=body)
        assert response.status_code == 403
    assert (await client.get("/me", headers=admin.headers)).json()["is_admin"] is True


async def test_admin_update_of_unknown_user_returns_404(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    response = await client.patch("/users/424242", headers=admin.headers, json={"name": "x"})
    assert response.status_code == 404
    assert response.json()["detail"] == "User not found"
