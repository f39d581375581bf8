from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from townsquare.platform.text import SINGLE_LINE, text_rule


class TokenPair(BaseModel):
    access_token: str = Field(description="JWT to send as `Authorization: Bearer <token>`.")
    token_type: Literal["bearer"] = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Opaque token for `POST /auth/refresh`; usable once, then rotated."
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    refresh_token: Annotated[
        str, *text_rule(SINGLE_LINE, "must not contain control characters")
    ] = Field(min_length=1, max_length=256, description="The refresh token last issued.")
