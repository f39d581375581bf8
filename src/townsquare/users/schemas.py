from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from townsquare.platform.text import SINGLE_LINE, SINGLE_LINE_VISIBLE, text_rule

MAX_DB_INT = 2_147_483_647
_NAME_RULE = text_rule(
    SINGLE_LINE_VISIBLE, "must contain a visible character and no control characters"
)
_PASSWORD_RULE = text_rule(SINGLE_LINE, "must not contain control characters")


def _strip(value: str) -> str:
    # The rule above guarantees a visible character is left.
    return value.strip()


def _valid_email(value: str) -> str:
    # pydantic's EmailStr, plus the `.test` domain (which email-validator calls special
    # use): any address the schema's `format: email` allows is accepted; whether mail
    # reaches it is the verification mail's question.
    try:
        email = email_validator.validate_email(
            value, check_deliverability=False, test_environment=True
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None
    # Addresses are unique case-insensitively: Ann@x.org and ann@x.org are one account.
    return email.normalized.lower()


Name = Annotated[
    str,
    Field(min_length=1, max_length=100, description="Display name, 1-100 characters."),
    *_NAME_RULE,
    AfterValidator(_strip),
]
Email = Annotated[
    str,
    Field(
        max_length=254,
        description="Email address; also the login name. Case-insensitive.",
        json_schema_extra={"format": "email"},
    ),
    AfterValidator(_valid_email),
]
Password = Annotated[
    str,
    Field(
        min_length=8,
        max_length=128,
        description="Password, 8-128 characters, no control characters.",
    ),
    *_PASSWORD_RULE,
]
UserId = Annotated[int, Field(ge=1, le=MAX_DB_INT, description="The user's id.")]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    email: Email
    password: Password


class UserUpdate(BaseModel):
    """Fields to change on one's own account; omitted fields stay as they are."""

    # The rule below, in the schema too: naming `email` or `password` needs
    # `current_password` (which the route then checks).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "dependentRequired": {
                "email": ["current_password"],
                "password": ["current_password"],
            }
        },
    )

    name: Name | None = Field(default=None, description="New display name, 1-100 characters.")
    email: Email | None = Field(
        default=None, description="New email address; needs `current_password`."
    )
    password: Password | None = Field(
        default=None, description="New password; needs `current_password`."
    )
    current_password: Annotated[str, *_PASSWORD_RULE] | None = Field(
        default=None,
        max_length=128,
        description="The password in use now; required to change `email` or `password`.",
    )

    @model_validator(mode="after")
    def _sensitive_changes_need_current_password(self) -> Self:
        sensitive = {"email", "password"} & self.model_fields_set
        if sensitive and "current_password" not in self.model_fields_set:
            raise ValueError("current_password is required to change email or password")
        return self


class UserAdminUpdate(BaseModel):
    """What an admin may change on any account; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

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

    email: str = Field(
        description="Email address; shown only to its owner and admins.",
        json_schema_extra={"format": "email"},
    )
    email_verified: bool = Field(
        description="Whether the owner followed the link mailed to `email`; false again "
        "after the email changes."
    )
    is_admin: bool = Field(description="Whether the user is an administrator.")
    is_active: bool = Field(description="False when an admin has disabled the account.")
    created_at: datetime = Field(description="When the account was created (UTC).")
