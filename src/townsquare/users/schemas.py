from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

MAX_DB_INT = 2_147_483_647
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _clean_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must contain a visible character")
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters")
    return value


def _lower_email(value: str) -> str:
    # Addresses are unique case-insensitively: Ann@x.org and ann@x.org are one account.
    return value.lower()


Name = Annotated[
    str,
    Field(min_length=1, max_length=100, description="Display name, 1-100 characters."),
    AfterValidator(_clean_name),
]
Email = Annotated[
    EmailStr,
    Field(max_length=254, description="Email address; also the login name. Case-insensitive."),
    AfterValidator(_lower_email),
]
Password = Annotated[
    str,
    Field(min_length=8, max_length=128, description="Password, 8-128 characters."),
]
UserId = Annotated[int, Field(ge=1, le=MAX_DB_INT, description="The user's id.")]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email
    password: Password


class UserUpdate(BaseModel):
    """Fields to change on one's own account; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description="New display name, 1-100 characters.")
    email: Email | None = Field(
        default=None, description="New email address; needs `current_password`."
    )
    password: Password | None = Field(
        default=None, description="New password; needs `current_password`."
    )
    current_password: str | None = Field(
        default=None,
        max_length=128,
        description="The password in use now; required to change `email` or `password`.",
    )

    @model_validator(mode="after")
    def _sensitive_changes_need_current_password(self) -> Self:
        if (self.email is not None or self.password is not None) and not self.current_password:
            raise ValueError("current_password is required to change email or password")
        return self


class UserAdminUpdate(BaseModel):
    """What an admin may change on any account; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description="New display name.")
    is_active: bool | None = Field(
        default=None,
        description="False disables the account: its tokens stop working and its "
        "WebSockets are closed on every instance.",
    )
    is_admin: bool | None = Field(default=None, description="Grant or take admin rights.")


class UserPublic(BaseModel):
    """What any signed-in user may see of another."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The user's id.")
    name: str = Field(description="Display name.")


class UserRead(UserPublic):
    """What a user sees of themself, and what admins see of anyone."""

    email: EmailStr = Field(description="Email address; shown only to its owner and admins.")
    email_verified: bool = Field(
        description="Whether the owner followed the link mailed to `email`; false again "
        "after the email changes."
    )
    is_admin: bool = Field(description="Whether the user is an administrator.")
    is_active: bool = Field(description="False when an admin has disabled the account.")
    created_at: datetime = Field(description="When the account was created (UTC).")
