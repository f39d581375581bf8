"""Email verification and password reset, with real mail through a real SMTP server."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import MakeAccount, make_settings
from tests.support.brokers import eventually
from tests.support.smtp import MailServer, html_of, link_in, text_of, token_in
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.main import create_app
from townsquare.platform.database import Database


async def _signup(client: httpx.AsyncClient, email: str, password: str = "first password") -> int:
    response = await client.post(
        "/users", json={"name": "Ann", "email": email, "password": password}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def test_signup_mails_a_link_that_verifies_the_account(
    client: httpx.AsyncClient, mail_server: MailServer
) -> None:
    await _signup(client, "ann@example.com")
    login = await _login(client, "ann@example.com", "first password")
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get("/me", headers=headers)).json()["email_verified"] is False

    [mail] = await mail_server.wait_for(1)
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Verify your email address"
    link = link_in(mail)
    assert link.startswith("https://chat.example.org/#/verify?token=")
    assert link in html_of(mail)  # both parts carry it
    assert "<a href=" in html_of(mail)

    response = await client.post("/auth/verify-email", json={"token": token_in(mail)})
    assert response.status_code == 204
    assert (await client.get("/me", headers=headers)).json()["email_verified"] is True
    # Single use.
    again = await client.post("/auth/verify-email", json={"token": token_in(mail)})
    assert again.status_code == 404
    assert "already used" in again.json()["detail"]


async def test_verify_email_with_unknown_token_returns_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/verify-email", json={"token": "not-a-real-token"})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("This link is invalid")


async def test_verification_link_of_an_old_address_verifies_nothing(
    client: httpx.AsyncClient, mail_server: MailServer, make_account: MakeAccount
) -> None:
    account = await make_account()
    [first] = await mail_server.wait_for(1)
    changed = await client.patch(
        "/me",
        headers=account.headers,
        json={"email": "new@example.com", "current_password": account.password},
    )
    assert changed.json()["email_verified"] is False
    await mail_server.wait_for(2)
    [second] = mail_server.to("new@example.com")
    stale = await client.post("/auth/verify-email", json={"token": token_in(first)})
    assert stale.status_code == 404
    assert (
        await client.post("/auth/verify-email", json={"token": token_in(second)})
    ).status_code == 204
    assert (await client.get("/me", headers=account.headers)).json()["email_verified"] is True


async def test_resend_verification_sends_a_new_mail_then_is_limited(
    client: httpx.AsyncClient, mail_server: MailServer, make_account: MakeAccount
) -> None:
    account = await make_account()
    await mail_server.wait_for(1)
    for sent in range(2, 5):  # VERIFICATION_EMAIL_LIMIT: 3/hour
        response = await client.post("/me/verification-email", headers=account.headers)
        assert response.status_code == 202
        await mail_server.wait_for(sent)
    refused = await client.post("/me/verification-email", headers=account.headers)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


async def test_resend_verification_when_verified_returns_409(
    client: httpx.AsyncClient, mail_server: MailServer, make_account: MakeAccount
) -> None:
    account = await make_account()
    [mail] = await mail_server.wait_for(1)
    await client.post("/auth/verify-email", json={"token": token_in(mail)})
    response = await client.post("/me/verification-email", headers=account.headers)
    assert response.status_code == 409


async def test_password_reset_mails_a_link_that_sets_a_new_password_and_ends_sessions(
    app: FastAPI, client: httpx.AsyncClient, mail_server: MailServer, make_account: MakeAccount
) -> None:
    ended: list[AccountChange] = []

    async def record(change: AccountChange) -> None:
        ended.append(change)

    app.state.revocations.add_listener(record)
    account = await make_account()
    await mail_server.wait_for(1)  # the verification mail
    response = await client.post("/auth/password-reset", json={"email": account.email})
    assert response.status_code == 202
    [_, mail] = await mail_server.wait_for(2)
    assert mail["Subject"] == "Reset your password"
    assert link_in(mail).startswith("https://chat.example.org/#/reset?token=")
    assert "30 minutes" in text_of(mail)

    confirm = await client.post(
        "/auth/password-reset/confirm",
        json={"token": token_in(mail), "new_password": "brand new password"},
    )
    assert confirm.status_code == 204
    assert AccountChange(account.id, ChangeKind.SESSIONS_ENDED) in ended
    assert (await _login(client, account.email, account.password)).status_code == 401
    assert (await _login(client, account.email, "brand new password")).status_code == 200
    assert (await client.get("/me", headers=account.headers)).status_code == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status_code == 401
    # The link worked once.
    replay = await client.post(
        "/auth/password-reset/confirm",
        json={"token": token_in(mail), "new_password": "third password!"},
    )
    assert replay.status_code == 404


async def test_password_reset_for_unknown_email_answers_the_same_and_mails_nothing(
    app: FastAPI, client: httpx.AsyncClient, mail_server: MailServer, make_account: MakeAccount
) -> None:
    account = await make_account()
    await mail_server.wait_for(1)
    unknown = await client.post("/auth/password-reset", json={"email": "nobody@example.com"})
    known = await client.post("/auth/password-reset", json={"email": account.email})
    assert unknown.status_code == known.status_code == 202
    assert unknown.content == known.content == b""
    await mail_server.wait_for(2)
    await app.state.jobs.idle()
    # Both jobs ran; only the account's address got a mail.
    assert [mail["To"] for mail in mail_server.received] == [account.email, account.email]


async def test_expired_reset_link_is_refused(database_url: str, mail_server: MailServer) -> None:
    settings = make_settings(
        database_url=database_url, smtp_url=mail_server.url, password_reset_ttl_seconds=60
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            await _signup(client, "old@example.com")
            await client.post("/auth/password-reset", json={"email": "old@example.com"})
            [_, mail] = await mail_server.wait_for(2)
            database: Database = app.state.database
            from sqlalchemy import text

            async with database.engine.begin() as connection:
                await connection.execute(text("UPDATE account_tokens SET expires_at = created_at"))
            response = await client.post(
                "/auth/password-reset/confirm",
                json={"token": token_in(mail), "new_password": "never set this"},
            )
            assert response.status_code == 404
            assert (await _login(client, "old@example.com", "first password")).status_code == 200
        from tests.support import databases

        await databases.empty_tables(database.engine)


def _runs(app: FastAPI, task: str, outcome: str) -> float:
    value = app.state.metrics.registry.get_sample_value(
        "townsquare_jobs_finished_total", {"task": task, "outcome": outcome}
    )
    return float(value or 0)


async def test_mail_is_retried_while_smtp_is_down_and_delivered_once(
    app: FastAPI, client: httpx.AsyncClient, mail_server: MailServer
) -> None:
    await mail_server.stop()
    await _signup(client, "patient@example.com")
    assert await eventually(lambda: _runs(app, "mail.send", "failed") >= 3, within=20)
    assert mail_server.received == []
    await mail_server.start()
    [mail] = await mail_server.wait_for(1)
    assert mail["To"] == "patient@example.com"
    # No attempt is running or waiting any more: what arrived is all that will.
    await app.state.jobs.idle()
    assert app.state.jobs.retry.pending_timers() == 0
    assert _runs(app, "mail.send", "succeeded") == 1
    assert len(mail_server.received) == 1


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": "x" * 200}, {"token": "t", "x": 1}])
async def test_verify_email_with_bad_body_returns_422(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    assert (await client.post("/auth/verify-email", json=body)).status_code == 422


async def test_reset_mails_to_one_account_are_capped_per_hour(
    app: FastAPI, client: httpx.AsyncClient, mail_server: MailServer, make_account: MakeAccount
) -> None:
    account = await make_account()
    for _ in range(7):
        response = await client.post("/auth/password-reset", json={"email": account.email})
        assert response.status_code == 202
    await app.state.jobs.idle()
    await mail_server.wait_for(6)  # the verification mail and 5 reset mails
    await app.state.jobs.idle()
    assert app.state.jobs.retry.pending_timers() == 0
    resets = [m for m in mail_server.received if m["Subject"] == "Reset your password"]
    assert len(resets) == 5
