"""What a login records about the client that made it (shown by GET /auth/sessions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

MAX_USER_AGENT = 256


@dataclass(frozen=True, slots=True)
class ClientInfo:
    user_agent: str | None
    ip: str | None


async def get_client_info(connection: HTTPConnection) -> ClientInfo:
    # The peer address as uvicorn/gunicorn resolved it (X-Forwarded-For only from
    # FORWARDED_ALLOW_IPS, so a client cannot claim another address).
    agent = connection.headers.get("user-agent")
    return ClientInfo(
        user_agent=agent[:MAX_USER_AGENT] if agent else None,
        ip=connection.client.host[:64] if connection.client else None,
    )


Client = Annotated[ClientInfo, Depends(get_client_info)]
