from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenPair(BaseModel):
    access_token: str = Field(description="JWT to send as `Authorization: Bearer <token>`.")
    token_type: Literal["bearer"] = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str | None = Field(
        description="Opaque token for `POST /auth/refresh`; usable once, then rotated. "
        "null when the request asked for it as a cookie (`X-Refresh-Cookie: true`)."
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(
        min_length=1, max_length=256, description="The refresh token last issued."
    )
