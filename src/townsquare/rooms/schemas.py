from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from townsquare.users.schemas import UserPublic

ROOM_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
MAX_BODY_LENGTH = 4000
MAX_SEQ = 2_147_483_647


def _clean_body(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain a visible character")
    return value


RoomName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=ROOM_NAME_PATTERN,
        description="The room's name: 1-64 of a-z, 0-9, `-` and `_`.",
    ),
]
MessageBody = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_BODY_LENGTH,
        description=f"The message text, 1-{MAX_BODY_LENGTH} characters.",
    ),
    AfterValidator(_clean_body),
]
ClientId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The sender's own id for the message (1-64 of A-Z a-z 0-9 . _ : -); "
        "a send repeated with the same client_id is stored once.",
    ),
]
Topic = Annotated[
    str, Field(max_length=200, description="What the room is about, up to 200 characters.")
]


class RoomCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RoomName
    topic: Topic | None = Field(default=None, description="What the room is about.")
    private: bool = Field(
        default=False, description="Private rooms are visible only to their members."
    )


class RoomUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: Topic | None = Field(
        default=None, description="A new topic; null clears it; absent leaves it."
    )
    private: bool | None = Field(
        default=None, description="Make the room private (members only) or public."
    )


class RoomRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The room's id.")
    name: str = Field(description="The room's unique name.")
    topic: str | None = Field(description="What the room is about.")
    private: bool = Field(
        validation_alias="is_private", description="Whether only members can see it."
    )
    owner_id: int | None = Field(description="The user who created the room.")
    last_seq: int = Field(description="The `seq` of the room's latest message (0 if none).")
    created_at: datetime = Field(description="When the room was created (UTC).")


class MemberRead(BaseModel):
    user: UserPublic = Field(description="The member.")
    role: str = Field(description="`owner` or `member`.")
    added_at: datetime = Field(description="When the user became a member (UTC).")


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: MessageBody


class MessageRead(BaseModel):
    id: int = Field(description="The message's id.")
    room: str = Field(description="The room's name.")
    seq: int = Field(description="Position in the room: 1, 2, 3, ... with no gap.")
    author: UserPublic | None = Field(description="Who sent it (null once the user is deleted).")
    body: str = Field(description="The message text.")
    sent_at: datetime = Field(description="When it was stored (UTC).")
    client_id: str | None = Field(
        default=None, description="The sender's own id for it, when it gave one."
    )
