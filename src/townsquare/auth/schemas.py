from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from townsquare.platform.text import SINGLE_LINE, text_rule
from townsquare.users.schemas import Email, Password


class TokenPair(BaseModel):
    access_token: str = Field(description="JWT to send as `Authorization: Bearer <token>`.")
    token_type: Literal["bearer"] = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str | None = Field(
        description="Opaque token for `POST /auth/refresh`; usable once, then rotated. "
        "null when the request asked for it as a cookie (`X-Refresh-Cookie: true`)."
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    refresh_token: Annotated[
        str, *text_rule(SINGLE_LINE, "must not contain control characters")
    ] = Field(min_length=1, max_length=256, description="The refresh token last issued.")


AccountTokenField = Annotated[
    str, Field(min_length=1, max_length=128, description="The token from the mailed link.")
]


class EmailVerification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: AccountTokenField


class PasswordResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class PasswordResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: AccountTokenField
    new_password: Password


class SessionRead(BaseModel):
    """One login of the caller."""

    id: str = Field(description="The session's id (for DELETE /auth/sessions/{id}).")
    created_at: datetime = Field(description="When the login happened (UTC).")
    last_used_at: datetime = Field(
        description="The latest login or token refresh of this session (UTC)."
    )
    expires_at: datetime = Field(description="When it ends unless refreshed again (UTC).")
    user_agent: str | None = Field(description="The client's User-Agent at its last use.")
    client_ip: str | None = Field(description="The client's address at its last use.")
    current: bool = Field(description="Whether this request was made with this session.")
