from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from townsquare.rooms.schemas import RoomName
from townsquare.users.schemas import Name

MAX_ROOMS_PER_KEY = 50


def _unique(rooms: list[str]) -> list[str]:
    return list(dict.fromkeys(rooms))


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Shown as the author of what the key posts.")
    rooms: Annotated[
        list[RoomName],
        Field(
            min_length=1,
            max_length=MAX_ROOMS_PER_KEY,
            description=f"Names of the rooms the key may post into (1-{MAX_ROOMS_PER_KEY}).",
        ),
        AfterValidator(_unique),
    ]


class ApiKeyRead(BaseModel):
    id: int = Field(description="The key's id (for DELETE /api-keys/{id}).")
    name: str = Field(description="The key's name; messages it posts show it as author.")
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    author_id: int = Field(description="The user id its messages carry as `author.id`.")
    rooms: list[str] = Field(description="Rooms the key may post into.")
    created_at: datetime = Field(description="When the key was created (UTC).")
    last_used_at: datetime | None = Field(
        description="When the key last posted (to the minute), if ever."
    )


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(
        description="The secret, shown this once (only its hash is stored): send it as "
        "`Authorization: Bearer <key>` to POST /rooms/{name}/messages."
    )
