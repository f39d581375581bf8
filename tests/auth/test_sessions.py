"""Ending every session of an account: logout-all, password change, an admin disabling it."""

from __future__ import annotations

import time

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


async def _second_login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    pair = await client.post("/auth/token", data={"username": email, "password": password})
    assert pair.status_code == 200, pair.text
    return {"Authorization": f"Bearer {pair.json()['access_token']}"}


async def test_logout_refuses_that_logins_access_token_at_once(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    other_login = await _second_login(client, account.email, account.password)
    ended: list[AccountChange] = []

    async def listener(change: AccountChange) -> None:
        ended.append(change)

    app.state.revocations.add_listener(listener)
    # Served (and cached) before the logout.
    assert (await client.get("/me", headers=account.headers)).status_code == 200
    assert (await client.get("/me", headers=other_login)).status_code == 200
    out = await client.post("/auth/logout", json={"refresh_token": account.refresh_token})
    assert out.status_code == 204
    refused = await client.get("/me", headers=account.headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["detail"] == "This login has ended; sign in again"
    # The account's other login is untouched.
    assert (await client.get("/me", headers=other_login)).status_code == 200
    assert [(c.user_id, c.kind) for c in ended] == [(account.id, ChangeKind.SESSION_ENDED)]


async def test_logged_out_token_is_refused_by_a_process_that_missed_the_news(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    # The TTL safety net: an instance that never heard of the logout reads the login
    # again once its entry is older than PRINCIPAL_CACHE_TTL_SECONDS.
    account = await make_account()
    assert (await client.get("/me", headers=account.headers)).status_code == 200
    app.state.revocations._listeners.clear()  # this process will not hear of it
    out = await client.post("/auth/logout", json={"refresh_token": account.refresh_token})
    assert out.status_code == 204
    assert (await client.get("/me", headers=account.headers)).status_code == 200  # stale
    later = time.monotonic() + app.state.settings.principal_cache_ttl_seconds + 1
    app.state.principals.clock = lambda: later  # every entry is now past its TTL
    assert (await client.get("/me", headers=account.headers)).status_code == 401


async def test_reused_refresh_token_refuses_that_logins_access_token_at_once(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    assert (await client.get("/me", headers=account.headers)).status_code == 200
    first = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    new_headers = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await client.get("/me", headers=new_headers)).status_code == 200
    reused = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reused.status_code == 401
    for headers in (account.headers, new_headers):
        assert (await client.get("/me", headers=headers)).status_code == 401


async def test_admin_flag_taken_counts_from_the_next_request(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    boss = await make_account(admin=True)
    deputy = await make_account(admin=True)
    user = await make_account()
    grant = await client.patch(
        f"/users/{user.id}", json={"name": "Renamed"}, headers=deputy.headers
    )
    assert grant.status_code == 200  # the deputy is an admin, and cached as one
    demoted = await client.patch(
        f"/users/{deputy.id}", json={"is_admin": False}, headers=boss.headers
    )
    assert demoted.status_code == 200
    refused = await client.patch(
        f"/users/{user.id}", json={"name": "Again"}, headers=deputy.headers
    )
    assert refused.status_code == 403
    # Emails are shown to admins only: the deputy now sees the public view.
    assert (await client.get(f"/users/{user.id}", headers=deputy.headers)).json() == {
        "id": user.id,
        "name": "Renamed",
    }
