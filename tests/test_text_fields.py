"""Control characters and lone surrogates in any text field: refused at validation
(422, or 401 at login), the same on SQLite and PostgreSQL, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import MakeAccount

BAD = ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\ud800"]
IDS = ["nul", "bell", "escape", "del", "c1", "lone-surrogate"]


def _json(value: object) -> bytes:
    import json

    # ensure_ascii writes a lone surrogate as the \ud800 escape, as a client would.
    return json.dumps(value).encode()


@pytest.mark.parametrize("bad", BAD, ids=IDS)
async def test_signup_refuses_control_characters_in_every_field(
    client: httpx.AsyncClient, bad: str
) -> None:
    good = {"name": "Ann", "email": "ann@example.com", "password": "long enough"}
    for field in good:
        body = {**good, field: f"x{bad}y" + ("@example.com" if field == "email" else "longer")}
        response = await client.post(
            "/users", content=_json(body), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (field, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", field]


# A form is percent-encoded UTF-8: it cannot carry a lone surrogate.
@pytest.mark.parametrize("bad", BAD[:-1], ids=IDS[:-1])
async def test_login_with_control_characters_is_401(
    client: httpx.AsyncClient, make_account: MakeAccount, bad: str
) -> None:
    account = await make_account()
    for form in (
        {"username": f"{account.email}{bad}", "password": account.password},
        {"username": account.email, "password": f"{account.password}{bad}"},
        {"username": bad, "password": bad},
    ):
        response = await client.post("/auth/token", data=form)
        assert response.status_code == 401, response.text


@pytest.mark.parametrize("bad", BAD, ids=IDS)
async def test_authenticated_text_fields_refuse_control_characters(
    client: httpx.AsyncClient, make_account: MakeAccount, bad: str
) -> None:
    account = await make_account()
    admin = await make_account(admin=True)
    room = await client.post("/rooms", json={"name": "general"}, headers=account.headers)
    assert room.status_code == 201
    cases = [
        ("PATCH", "/me", {"name": f"A{bad}"}, account),
        ("PATCH", "/me", {"password": f"new pass{bad}", "current_password": "x" * 8}, account),
        ("PATCH", "/me", {"password": "new password", "current_password": f"a{bad}"}, account),
        ("PATCH", f"/users/{account.id}", {"name": f"A{bad}"}, admin),
        ("POST", "/rooms", {"name": "other", "topic": f"t{bad}"}, account),
        ("POST", "/rooms/general/messages", {"body": f"hello{bad}"}, account),
        ("POST", "/auth/refresh", {"refresh_token": f"{account.refresh_token}{bad}"}, account),
        ("POST", "/auth/logout", {"refresh_token": f"{account.refresh_token}{bad}"}, account),
    ]
    for method, path, body, actor in cases:
        response = await client.request(
            method,
            path,
            content=_json(body),
            headers={**actor.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, (path, body, response.text)


async def test_message_body_keeps_line_breaks_and_tabs(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    await client.post("/rooms", json={"name": "general"}, headers=account.headers)
    body = "line one\nline two\r\n\tindented"
    posted = await client.post(
        "/rooms/general/messages", json={"body": body}, headers=account.headers
    )
    assert posted.status_code == 201
    assert posted.json()["body"] == body
