"""The REST calls a client needs: accounts, tokens, rooms and history.

Answers are parsed into the server's own response models, so a field renamed on
the server is a type error here, not a surprise at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from townsquare.auth.schemas import TokenPair
from townsquare.client.credentials import Credentials
from townsquare.client.errors import ApiError
from townsquare.rooms.schemas import MemberRead, MessageRead, RoomRead
from townsquare.users.schemas import UserRead

Model = TypeVar("Model", bound=BaseModel)

_MESSAGES = TypeAdapter(list[MessageRead])
_ROOMS = TypeAdapter(list[RoomRead])
_MEMBERS = TypeAdapter(list[MemberRead])


class Api:
    """`await Api(url).login(email, password)`; with `credentials` (or `token`) the
    calls are authenticated, and a 401 is answered by one refresh and one retry."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        credentials: Credentials | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if credentials is None and token is not None:
            credentials = Credentials(token)
        self.credentials = credentials
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), timeout=timeout, transport=transport
        )
        if credentials is not None and credentials.refresher is None:
            credentials.refresher = self.refresh

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing --------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        credentials = self.credentials if auth else None
        seen = credentials.version if credentials is not None else None
        response = await self._http.request(
            method, path, headers=self._headers(credentials, headers), **kwargs
        )
        if response.status_code == 401 and credentials is not None and credentials.can_refresh:
            await credentials.refresh(seen)
            response = await self._http.request(
                method, path, headers=self._headers(credentials, headers), **kwargs
            )
        if response.is_error:
            raise _error(response)
        return response

    @staticmethod
    def _headers(
        credentials: Credentials | None, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = dict(extra or {})
        if credentials is not None:
            headers["Authorization"] = f"Bearer {credentials.access_token}"
        return headers

    async def _get(self, model: type[Model], path: str, **kwargs: Any) -> Model:
        response = await self._request("GET", path, **kwargs)
        return model.model_validate(response.json(), by_name=True)

    # -- accounts and tokens ---------------------------------------------------------

    async def signup(self, *, name: str, email: str, password: str) -> UserRead:
        response = await self._request(
            "POST",
            "/users",
            auth=False,
            json={"name": name, "email": email, "password": password},
        )
        return UserRead.model_validate(response.json())

    async def login(self, email: str, password: str) -> TokenPair:
        """OAuth2 password flow. Also makes this `Api` use the new tokens."""
        response = await self._request(
            "POST", "/auth/token", auth=False, data={"username": email, "password": password}
        )
        pair = TokenPair.model_validate(response.json())
        if self.credentials is None:
            self.credentials = Credentials.from_pair(pair)
            self.credentials.refresher = self.refresh
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Trade a refresh token for a new pair (the old refresh token is spent)."""
        response = await self._request(
            "POST", "/auth/refresh", auth=False, json={"refresh_token": refresh_token}
        )
        return TokenPair.model_validate(response.json())

    async def logout(self, refresh_token: str) -> None:
        await self._request(
            "POST", "/auth/logout", auth=False, json={"refresh_token": refresh_token}
        )

    async def logout_all(self) -> None:
        """End every session of the account, everywhere (its sockets too)."""
        await self._request("POST", "/auth/logout-all")

    async def me(self) -> UserRead:
        return await self._get(UserRead, "/me")

    # -- rooms -------------------------------------------------------------------------

    async def rooms(self, *, skip: int = 0, limit: int = 100) -> list[RoomRead]:
        response = await self._request("GET", "/rooms", params={"skip": skip, "limit": limit})
        return _ROOMS.validate_python(response.json(), by_name=True)

    async def room(self, name: str) -> RoomRead:
        return await self._get(RoomRead, f"/rooms/{name}")

    async def create_room(
        self, name: str, *, topic: str | None = None, private: bool = False
    ) -> RoomRead:
        response = await self._request(
            "POST", "/rooms", json={"name": name, "topic": topic, "private": private}
        )
        return RoomRead.model_validate(response.json(), by_name=True)

    async def members(self, room: str) -> list[MemberRead]:
        response = await self._request("GET", f"/rooms/{room}/members")
        return _MEMBERS.validate_python(response.json())

    async def add_member(self, room: str, user_id: int) -> MemberRead:
        response = await self._request("PUT", f"/rooms/{room}/members/{user_id}")
        return MemberRead.model_validate(response.json())

    async def remove_member(self, room: str, user_id: int) -> None:
        await self._request("DELETE", f"/rooms/{room}/members/{user_id}")

    async def history(
        self,
        room: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[MessageRead]:
        """Oldest first: the first `limit` after `after_seq` when given, else the latest
        `limit` (before `before_seq`, when given). `limit` is 1..200."""
        params: dict[str, int] = {"limit": limit}
        if after_seq is not None:
            params["after_seq"] = after_seq
        if before_seq is not None:
            params["before_seq"] = before_seq
        response = await self._request("GET", f"/rooms/{room}/messages", params=params)
        return _MESSAGES.validate_python(response.json())

    async def post_message(
        self, room: str, body: str, *, idempotency_key: str | None = None
    ) -> MessageRead:
        """Post over HTTP (no WebSocket needed); a retry with the same
        `idempotency_key` returns the message stored the first time."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = await self._request(
            "POST", f"/rooms/{room}/messages", json={"body": body}, headers=headers
        )
        return MessageRead.model_validate(response.json())


async def login(url: str, email: str, password: str) -> TokenPair:
    """Sign in at the service `url`; the token pair for `Client(url, tokens=...)`."""
    async with Api(url) as api:
        return await api.login(email, password)


def _error(response: httpx.Response) -> ApiError:
    detail: object = response.text
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail", detail)
        request_id = body.get("request_id") or request_id
    return ApiError(response.status_code, detail, request_id)
